// SPDX-License-Identifier: MIT
// The fused float steps (cpp/src/fused_step_internal.h) against the step computed in double from the same
// inputs. LSTM: row counts across its 4-row groups, hidden sizes that end in a partial block, a recurrent width
// other than H (the projection's), padded strides, in-place cell state, no previous states, and unit ranges:
// only a range's units are written, and two ranges give exactly what one run over all units gives. GRU (reset
// after): with and without biases, previous states and the kept W_hn h + b_hn, masked states apart from the
// unmasked ones.
#include "../src/fused_step_internal.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

namespace {

using lstm_ext::Index;
using lstm_ext::kGatesLstm;
using lstm_ext::kGatesGru;
using lstm_ext::detail::FusedGruStep;
using lstm_ext::detail::FusedLstmStep;

std::vector<float> random_floats(Index size, unsigned seed, float scale = 1.0f) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> u(-scale, scale);
  std::vector<float> v(static_cast<size_t>(size));
  for (float& a : v) a = u(gen);
  return v;
}

double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

struct StepCase {
  Index rows, hidden, k, u0, u1;
  bool with_prev = true, in_place = false;
  std::string describe() const {
    return "rows=" + std::to_string(rows) + " H=" + std::to_string(hidden) + " K=" + std::to_string(k) +
           " units=[" + std::to_string(u0) + "," + std::to_string(u1) + ")" + (with_prev ? "" : " prev=null") +
           (in_place ? " in-place" : "");
  }
};

// Buffers of one step, with padded strides (ld_prev = K + 3, ld_h = H + 5).
struct StepBuffers {
  StepBuffers(const StepCase& c)
      : G(kGatesLstm * c.hidden), ld_prev(c.k + 3), ld_h(c.hidden + 5),
        w(random_floats(G * c.k, 1, 0.5f)), prev(random_floats(c.rows * ld_prev, 2)),
        gates(random_floats(c.rows * G, 3, 2.0f)), c_prev(random_floats(c.rows * c.hidden, 4)),
        c_t(random_floats(c.rows * c.hidden, 5)), h_t(random_floats(c.rows * ld_h, 6)) {}
  Index G, ld_prev, ld_h;
  std::vector<float> w, prev, gates, c_prev, c_t, h_t;

  void run(const FusedLstmStep& step, const StepCase& c) {
    float* c_out = c.in_place ? c_prev.data() : c_t.data();
    step.run(c.rows, c.with_prev ? prev.data() : nullptr, ld_prev, gates.data(), c_prev.data(), c_out, h_t.data(),
             ld_h);
  }
};

void check_against_double(const StepCase& c) {
  SCOPED_TRACE(c.describe());
  StepBuffers before(c), got(c);
  got.run(FusedLstmStep(got.w.data(), c.hidden, c.k, c.u0, c.u1), c);
  const Index H = c.hidden, G = got.G;
  const std::vector<float>& c_got = c.in_place ? got.c_prev : got.c_t;
  for (Index r = 0; r < c.rows; ++r) {
    for (Index u = 0; u < H; ++u) {
      const bool mine = u >= c.u0 && u < c.u1;
      double pre[kGatesLstm];
      for (Index q = 0; q < kGatesLstm; ++q) {
        pre[q] = before.gates[r * G + q * H + u];
        if (c.with_prev) {
          for (Index kk = 0; kk < c.k; ++kk)
            pre[q] += double(before.w[(q * H + u) * c.k + kk]) * before.prev[r * before.ld_prev + kk];
        }
      }
      const double i = sigmoid(pre[0]), f = sigmoid(pre[1]), g = std::tanh(pre[2]), o = sigmoid(pre[3]);
      const double cell = f * before.c_prev[r * H + u] + i * g;
      const double want[kGatesLstm + 2] = {i, f, g, o, cell, o * std::tanh(cell)};
      const float untouched[kGatesLstm + 2] = {
          before.gates[r * G + u], before.gates[r * G + H + u], before.gates[r * G + 2 * H + u],
          before.gates[r * G + 3 * H + u], (c.in_place ? before.c_prev : before.c_t)[r * H + u],
          before.h_t[r * before.ld_h + u]};
      const float value[kGatesLstm + 2] = {got.gates[r * G + u], got.gates[r * G + H + u],
                                           got.gates[r * G + 2 * H + u], got.gates[r * G + 3 * H + u],
                                           c_got[r * H + u], got.h_t[r * got.ld_h + u]};
      for (int v = 0; v < kGatesLstm + 2; ++v) {
        if (mine) {
          EXPECT_NEAR(value[v], want[v], 2e-6 * (1.0 + std::abs(want[v]))) << "row " << r << " unit " << u << " value " << v;
        } else {
          EXPECT_EQ(value[v], untouched[v]) << "row " << r << " unit " << u << " value " << v << " (outside the range)";
        }
      }
    }
    for (Index pad = H; pad < got.ld_h; ++pad) EXPECT_EQ(got.h_t[r * got.ld_h + pad], before.h_t[r * got.ld_h + pad]);
  }
}

TEST(FusedStep, MatchesTheStepInDoubleForEveryRowGroupAndPartialBlock) {
  for (Index rows : {1, 2, 3, 4, 5, 6, 7, 9, 13}) {
    for (Index hidden : {1, 5, 16, 17, 40}) check_against_double({rows, hidden, hidden, 0, hidden});
  }
}

TEST(FusedStep, TakesARecurrentWidthOtherThanTheHiddenSize) {
  for (Index k : {1, 3, 33}) check_against_double({3, 20, k, 0, 20});
}

TEST(FusedStep, RunsWithoutPreviousStatesAndWithTheCellStateInPlace) {
  check_against_double({2, 19, 19, 0, 19, /*with_prev=*/false});
  check_against_double({5, 19, 19, 0, 19, true, /*in_place=*/true});
}

TEST(FusedStep, WritesOnlyItsUnitRange) {
  check_against_double({3, 40, 40, 16, 40});
  check_against_double({1, 40, 40, 0, 16});
  check_against_double({6, 50, 50, 32, 48});
}

TEST(FusedStep, TwoUnitRangesGiveExactlyOneRunOverAllUnits) {
  for (Index rows : {1, 4, 6, 13}) {
    const StepCase all{rows, 72, 72, 0, 72};
    SCOPED_TRACE(all.describe());
    StepBuffers one(all), two(all);
    one.run(FusedLstmStep(one.w.data(), 72, 72, 0, 72), all);
    const StepCase left{rows, 72, 72, 0, 32}, right{rows, 72, 72, 32, 72};
    two.run(FusedLstmStep(two.w.data(), 72, 72, 0, 32), left);
    two.run(FusedLstmStep(two.w.data(), 72, 72, 32, 72), right);
    EXPECT_EQ(one.gates, two.gates);
    EXPECT_EQ(one.c_t, two.c_t);
    EXPECT_EQ(one.h_t, two.h_t);
  }
}

struct GruCase {
  Index rows, hidden;
  bool bias = true, with_prev = true, keep_n = true, masked = false;
  std::string describe() const {
    return "rows=" + std::to_string(rows) + " H=" + std::to_string(hidden) + (bias ? "" : " no-bias") +
           (with_prev ? "" : " prev=null") + (keep_n ? "" : " hidden_n=null") + (masked ? " masked" : "");
  }
};

void check_gru_against_double(const GruCase& c) {
  SCOPED_TRACE(c.describe());
  const Index H = c.hidden, G = kGatesGru * H, ld_m = H + 2, ld_u = H + 3, ld_h = H + 5;
  const std::vector<float> w = random_floats(G * H, 11, 0.5f), b = random_floats(G, 12);
  const std::vector<float> hu = random_floats(c.rows * ld_u, 13);
  std::vector<float> hm = random_floats(c.rows * ld_m, 14);
  if (!c.masked) {
    for (Index r = 0; r < c.rows; ++r) std::copy_n(hu.data() + r * ld_u, H, hm.data() + r * ld_m);
  }
  const std::vector<float> gates0 = random_floats(c.rows * G, 15, 2.0f);
  std::vector<float> gates = gates0, hidden_n = random_floats(c.rows * H, 16), h_t = random_floats(c.rows * ld_h, 17);
  const std::vector<float> h_t0 = h_t;
  FusedGruStep(w.data(), H).run(c.rows, c.with_prev ? hm.data() : nullptr, ld_m, c.with_prev ? hu.data() : nullptr,
                                ld_u, c.bias ? b.data() : nullptr, gates.data(), c.keep_n ? hidden_n.data() : nullptr,
                                h_t.data(), ld_h);
  for (Index r = 0; r < c.rows; ++r) {
    for (Index u = 0; u < H; ++u) {
      double hp[kGatesGru];
      for (Index q = 0; q < kGatesGru; ++q) {
        hp[q] = c.bias ? b[q * H + u] : 0.0;
        if (c.with_prev) {
          for (Index k = 0; k < H; ++k) hp[q] += double(w[(q * H + u) * H + k]) * hm[r * ld_m + k];
        }
      }
      const double rg = sigmoid(gates0[r * G + u] + hp[0]), zg = sigmoid(gates0[r * G + H + u] + hp[1]);
      const double ng = std::tanh(gates0[r * G + 2 * H + u] + rg * hp[2]);
      const double h = (1 - zg) * ng + zg * (c.with_prev ? hu[r * ld_u + u] : 0.0);
      const double want[4] = {rg, zg, ng, h};
      const float got[4] = {gates[r * G + u], gates[r * G + H + u], gates[r * G + 2 * H + u], h_t[r * ld_h + u]};
      for (int v = 0; v < 4; ++v)
        EXPECT_NEAR(got[v], want[v], 2e-6 * (1.0 + std::abs(want[v]))) << "row " << r << " unit " << u << " value " << v;
      if (c.keep_n) EXPECT_NEAR(hidden_n[r * H + u], hp[2], 2e-6 * (1.0 + std::abs(hp[2]))) << "row " << r << " unit " << u;
    }
    for (Index pad = H; pad < ld_h; ++pad) EXPECT_EQ(h_t[r * ld_h + pad], h_t0[r * ld_h + pad]);
  }
}

TEST(FusedGruStep, MatchesTheStepInDoubleForEveryRowGroupAndPartialBlock) {
  for (Index rows : {1, 2, 3, 4, 5, 9}) {
    for (Index hidden : {1, 7, 16, 17, 40}) check_gru_against_double({rows, hidden});
  }
}

TEST(FusedGruStep, RunsWithoutBiasesPreviousStatesOrTheKeptHiddenN) {
  check_gru_against_double({3, 21, /*bias=*/false});
  check_gru_against_double({3, 21, true, /*with_prev=*/false});
  check_gru_against_double({3, 21, true, true, /*keep_n=*/false});
}

TEST(FusedGruStep, MultipliesTheMaskedStatesAndBlendsTheUnmaskedOnes) {
  check_gru_against_double({5, 33, true, true, true, /*masked=*/true});
}

}  // namespace
