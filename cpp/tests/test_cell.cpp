// SPDX-License-Identifier: MIT
// The cell kernels (cell.h) against the sequence kernels over T = 1 with the same weights, accumulation of the
// weight gradients, NaN propagation from zero states, and their preconditions.
#include "lstm_ext/cell.h"
#include "lstm_ext/gru.h"
#include "lstm_ext/lstm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <stdexcept>
#include <vector>

namespace {

using lstm_ext::Index;

template <typename Scalar>
std::vector<Scalar> random_vector(std::mt19937& gen, Index n) {
  std::normal_distribution<double> dist(0.0, 0.7);
  std::vector<Scalar> v(static_cast<size_t>(n));
  for (auto& e : v) e = static_cast<Scalar>(dist(gen));
  return v;
}

template <typename Scalar>
double tolerance() {
  return std::is_same_v<Scalar, float> ? 2e-5 : 1e-12;
}

template <typename Scalar>
void expect_near_all(const std::vector<Scalar>& got, const std::vector<Scalar>& want, const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t k = 0; k < got.size(); ++k)
    ASSERT_NEAR(got[k], want[k], tolerance<Scalar>() * (1 + std::abs(double(want[k])))) << what << "[" << k << "]";
}

// One random cell problem: weights, inputs and output gradients of N rows.
template <typename Scalar>
struct CellProblem {
  Index N, I, H, G;
  std::vector<Scalar> w_ih, w_hh, b_ih, b_hh, x, h0, c0, dh1, dc1;
  CellProblem(Index n, Index i, Index h, Index gates, unsigned seed) : N(n), I(i), H(h), G(gates * h) {
    std::mt19937 gen(seed);
    w_ih = random_vector<Scalar>(gen, G * I);
    w_hh = random_vector<Scalar>(gen, G * H);
    b_ih = random_vector<Scalar>(gen, G);
    b_hh = random_vector<Scalar>(gen, G);
    x = random_vector<Scalar>(gen, N * I);
    h0 = random_vector<Scalar>(gen, N * H);
    c0 = random_vector<Scalar>(gen, N * H);
    dh1 = random_vector<Scalar>(gen, N * H);
    dc1 = random_vector<Scalar>(gen, N * H);
  }
  lstm_ext::CellDims dims() const { return {N, I, H}; }
  lstm_ext::CellWeights<Scalar> weights() const { return {w_ih.data(), w_hh.data(), b_ih.data(), b_hh.data()}; }
};

struct Shape {
  Index N, I, H;
};
const Shape kShapes[] = {{1, 1, 1}, {1, 128, 128}, {1, 5, 17}, {1, 40, 300}, {3, 4, 7}, {6, 33, 9}};

template <typename Scalar>
void lstm_cell_equals_one_lstm_step() {
  for (const Shape& s : kShapes) {
    CellProblem<Scalar> p(s.N, s.I, s.H, lstm_ext::kGatesLstm, 7);
    const Index N = p.N, I = p.I, H = p.H, G = p.G;
    std::vector<Scalar> h1(N * H), c1(N * H), gates(N * G);
    lstm_ext::lstm_cell_forward<Scalar>(p.dims(), p.weights(), p.x.data(), p.h0.data(), p.c0.data(), h1.data(),
                                        c1.data(), gates.data());
    std::vector<Scalar> dx(N * I), dh0(N * H), dc0(N * H), dw_ih(G * I), dw_hh(G * H), db_ih(G), db_hh(G);
    lstm_ext::lstm_cell_backward<Scalar>(p.dims(), p.weights(), p.x.data(), p.h0.data(), p.c0.data(), gates.data(),
                                         p.dh1.data(), p.dc1.data(), dx.data(), dh0.data(), dc0.data(),
                                         {dw_ih.data(), dw_hh.data(), db_ih.data(), db_hh.data()}, false);

    // The sequence kernels over T = 1, with the layers' summed bias.
    std::vector<Scalar> bias(G);
    for (Index k = 0; k < G; ++k) bias[k] = p.b_ih[k] + p.b_hh[k];
    const lstm_ext::LstmDims dims{1, N, I, H};
    const lstm_ext::LstmWeights<Scalar> w{p.w_ih.data(), p.w_hh.data(), bias.data(), nullptr};
    std::vector<Scalar> y(N * H), h_n(N * H), c_n(N * H), cg(N * G), cc(N * H);
    lstm_ext::lstm_forward<Scalar>(dims, w, p.x.data(), p.h0.data(), p.c0.data(), y.data(), h_n.data(), c_n.data(),
                                   {cg.data(), cc.data()});
    std::vector<Scalar> sdx(N * I), sdh0(N * H), sdc0(N * H), sdw_ih(G * I), sdw_hh(G * H), sdb(G);
    lstm_ext::lstm_backward<Scalar>(dims, w, p.x.data(), p.h0.data(), p.c0.data(), y.data(), {cg.data(), cc.data()},
                                    p.dh1.data(), nullptr, p.dc1.data(), sdx.data(), sdh0.data(), sdc0.data(),
                                    {sdw_ih.data(), sdw_hh.data(), sdb.data(), nullptr});
    expect_near_all(h1, h_n, "h1");
    expect_near_all(c1, c_n, "c1");
    expect_near_all(gates, cg, "gates");
    expect_near_all(dx, sdx, "dx");
    expect_near_all(dh0, sdh0, "dh0");
    expect_near_all(dc0, sdc0, "dc0");
    expect_near_all(dw_ih, sdw_ih, "dw_ih");
    expect_near_all(dw_hh, sdw_hh, "dw_hh");
    expect_near_all(db_ih, sdb, "db_ih");
    expect_near_all(db_hh, sdb, "db_hh");
  }
}

TEST(LstmCell, FloatEqualsOneStepOfTheSequenceKernel) { lstm_cell_equals_one_lstm_step<float>(); }
TEST(LstmCell, DoubleEqualsOneStepOfTheSequenceKernel) { lstm_cell_equals_one_lstm_step<double>(); }

template <typename Scalar>
void gru_cell_equals_one_gru_step() {
  for (const Shape& s : kShapes) {
    CellProblem<Scalar> p(s.N, s.I, s.H, lstm_ext::kGatesGru, 11);
    const Index N = p.N, I = p.I, H = p.H, G = p.G;
    std::vector<Scalar> h1(N * H), gates(N * G), hidden_n(N * H);
    lstm_ext::gru_cell_forward<Scalar>(p.dims(), p.weights(), p.x.data(), p.h0.data(), h1.data(), gates.data(),
                                       hidden_n.data());
    std::vector<Scalar> h1_eval(N * H);
    lstm_ext::gru_cell_forward<Scalar>(p.dims(), p.weights(), p.x.data(), p.h0.data(), h1_eval.data(), nullptr,
                                       nullptr);
    EXPECT_EQ(h1, h1_eval) << "inference and training forwards compute alike";
    std::vector<Scalar> dx(N * I), dh0(N * H), dw_ih(G * I), dw_hh(G * H), db_ih(G), db_hh(G);
    lstm_ext::gru_cell_backward<Scalar>(p.dims(), p.weights(), p.x.data(), p.h0.data(), gates.data(),
                                        hidden_n.data(), p.dh1.data(), dx.data(), dh0.data(),
                                        {dw_ih.data(), dw_hh.data(), db_ih.data(), db_hh.data()}, false);

    const lstm_ext::GruDims dims{1, N, I, H};
    const lstm_ext::GruWeights<Scalar> w{p.w_ih.data(), p.w_hh.data(), p.b_ih.data(), p.b_hh.data(), true};
    std::vector<Scalar> y(N * H), h_n(N * H), cg(N * G), chn(N * H);
    lstm_ext::gru_forward<Scalar>(dims, w, p.x.data(), p.h0.data(), y.data(), h_n.data(), {cg.data(), chn.data()});
    std::vector<Scalar> sdx(N * I), sdh0(N * H), sdw_ih(G * I), sdw_hh(G * H), sdb_ih(G), sdb_hh(G);
    lstm_ext::gru_backward<Scalar>(dims, w, p.x.data(), p.h0.data(), y.data(), {cg.data(), chn.data()},
                                   p.dh1.data(), nullptr, sdx.data(), sdh0.data(),
                                   {sdw_ih.data(), sdw_hh.data(), sdb_ih.data(), sdb_hh.data()});
    expect_near_all(h1, h_n, "h1");
    expect_near_all(gates, cg, "gates");
    expect_near_all(hidden_n, chn, "hidden_n");
    expect_near_all(dx, sdx, "dx");
    expect_near_all(dh0, sdh0, "dh0");
    expect_near_all(dw_ih, sdw_ih, "dw_ih");
    expect_near_all(dw_hh, sdw_hh, "dw_hh");
    expect_near_all(db_ih, sdb_ih, "db_ih");
    expect_near_all(db_hh, sdb_hh, "db_hh");
  }
}

TEST(GruCell, FloatEqualsOneStepOfTheSequenceKernel) { gru_cell_equals_one_gru_step<float>(); }
TEST(GruCell, DoubleEqualsOneStepOfTheSequenceKernel) { gru_cell_equals_one_gru_step<double>(); }

TEST(LstmCell, AccumulateAddsTheWeightGradientsToWhatTheBuffersHold) {
  CellProblem<double> p(2, 3, 4, lstm_ext::kGatesLstm, 3);
  const Index G = p.G;
  std::vector<double> h1(8), c1(8), gates(2 * G), dx(6), dh0(8), dc0(8);
  lstm_ext::lstm_cell_forward<double>(p.dims(), p.weights(), p.x.data(), p.h0.data(), p.c0.data(), h1.data(),
                                      c1.data(), gates.data());
  std::vector<double> once_w(G * 3), once_u(G * 4), once_b(G), once_c(G);
  lstm_ext::lstm_cell_backward<double>(p.dims(), p.weights(), p.x.data(), p.h0.data(), p.c0.data(), gates.data(),
                                       p.dh1.data(), nullptr, dx.data(), dh0.data(), dc0.data(),
                                       {once_w.data(), once_u.data(), once_b.data(), once_c.data()}, false);
  std::vector<double> acc_w(once_w), acc_u(once_u), acc_b(once_b), acc_c(once_c);
  lstm_ext::lstm_cell_backward<double>(p.dims(), p.weights(), p.x.data(), p.h0.data(), p.c0.data(), gates.data(),
                                       p.dh1.data(), nullptr, dx.data(), dh0.data(), dc0.data(),
                                       {acc_w.data(), acc_u.data(), acc_b.data(), acc_c.data()}, true);
  for (Index k = 0; k < G * 3; ++k) EXPECT_EQ(acc_w[k], 2 * once_w[k]);
  for (Index k = 0; k < G * 4; ++k) EXPECT_EQ(acc_u[k], 2 * once_u[k]);
  for (Index k = 0; k < G; ++k) EXPECT_EQ(acc_b[k], 2 * once_b[k]);
  EXPECT_EQ(once_b, once_c) << "b_ih and b_hh have the same gradient";
}

TEST(LstmCell, NanInARecurrentWeightReachesTheOutputFromAZeroState) {
  CellProblem<float> p(1, 3, 4, lstm_ext::kGatesLstm, 5);
  std::fill(p.h0.begin(), p.h0.end(), 0.0f);
  std::fill(p.c0.begin(), p.c0.end(), 0.0f);
  p.w_hh[0] = std::nanf("");  // row 0: gate i of unit 0
  std::vector<float> h1(4), c1(4);
  lstm_ext::lstm_cell_forward<float>(p.dims(), p.weights(), p.x.data(), p.h0.data(), p.c0.data(), h1.data(),
                                     c1.data(), nullptr);
  EXPECT_TRUE(std::isnan(h1[0]) && std::isnan(c1[0])) << "0 * NaN is NaN, as in torch";
  EXPECT_FALSE(std::isnan(h1[1]));
}

TEST(CellPreconditions, RejectZeroDimensionsNullArgumentsAndOneSidedBiases) {
  CellProblem<double> p(1, 2, 3, lstm_ext::kGatesLstm, 1);
  std::vector<double> h1(3), c1(3), gates(12), dx(2), dh0(3), dc0(3), dw(24), du(36), db(12), dc(12);
  const auto w = p.weights();
  const lstm_ext::CellGrads<double> g{dw.data(), du.data(), db.data(), dc.data()};
  auto fwd = [&](lstm_ext::CellDims d, lstm_ext::CellWeights<double> ww, const double* x, const double* h0) {
    lstm_ext::lstm_cell_forward<double>(d, ww, x, h0, p.c0.data(), h1.data(), c1.data(), gates.data());
  };
  EXPECT_THROW(fwd({0, 2, 3}, w, p.x.data(), p.h0.data()), std::invalid_argument);
  EXPECT_THROW(fwd({1, 2, -1}, w, p.x.data(), p.h0.data()), std::invalid_argument);
  EXPECT_THROW(fwd({Index(1) << 40, Index(1) << 40, 3}, w, p.x.data(), p.h0.data()), std::invalid_argument);
  EXPECT_THROW(fwd(p.dims(), w, nullptr, p.h0.data()), std::invalid_argument);
  EXPECT_THROW(fwd(p.dims(), w, p.x.data(), nullptr), std::invalid_argument);
  EXPECT_THROW(fwd(p.dims(), {w.w_ih, w.w_hh, w.b_ih, nullptr}, p.x.data(), p.h0.data()), std::invalid_argument);
  EXPECT_THROW(fwd(p.dims(), {nullptr, w.w_hh, nullptr, nullptr}, p.x.data(), p.h0.data()), std::invalid_argument);
  EXPECT_NO_THROW(fwd(p.dims(), w, p.x.data(), p.h0.data()));
  auto bwd = [&](const lstm_ext::CellGrads<double>& gg, const double* dh1) {
    lstm_ext::lstm_cell_backward<double>(p.dims(), w, p.x.data(), p.h0.data(), p.c0.data(), gates.data(), dh1,
                                         nullptr, dx.data(), dh0.data(), dc0.data(), gg, false);
  };
  EXPECT_THROW(bwd(g, nullptr), std::invalid_argument);
  EXPECT_THROW(bwd({dw.data(), du.data(), nullptr, nullptr}, p.dh1.data()), std::invalid_argument);
  EXPECT_THROW(bwd({nullptr, du.data(), db.data(), dc.data()}, p.dh1.data()), std::invalid_argument);
  EXPECT_NO_THROW(bwd(g, p.dh1.data()));

  std::vector<double> hn(3);
  EXPECT_THROW(lstm_ext::gru_cell_forward<double>({1, 2, 3}, w, p.x.data(), p.h0.data(), h1.data(), gates.data(),
                                                  nullptr),
               std::invalid_argument);
  EXPECT_THROW(lstm_ext::gru_cell_backward<double>({1, 2, 3}, w, p.x.data(), p.h0.data(), gates.data(), nullptr,
                                                   p.dh1.data(), dx.data(), dh0.data(), g, false),
               std::invalid_argument);
}

}  // namespace
