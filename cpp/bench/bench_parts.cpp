// SPDX-License-Identifier: MIT
// Microbenchmarks of the pieces of an LSTM forward, float32, on the shapes of the performance grid, so each
// kernel's share of the GEMM rate is visible next to bench_lstm's whole-sequence figures:
//   InputGemm      the input projection of all T*N rows: [T*N, I] x [I, 4H] (one GEMM per call), on each
//                  backend (0: Eigen, 1: OpenBLAS, 2: native), as the kernels call it (detail::gemm_on)
//   WeightGradGemm the input weights' gradient of a backward: [4H, T*N] x [T*N, I], on each backend
//   RecurrentGemm  one step's recurrent product [N, H] x [H, 4H], the weights as PyTorch stores them
//                  (row-major [4H, H], read transposed), at their own alignment (64 bytes, or 16 past it)
//   RecurrentPacked  the same product on weights packed once per call for Eigen's GEBP micro-kernel
//   RecurrentPanel the same product on weights packed once per call into panels for our own 8-row kernel
//                  (panel_gemm_internal.h; as the float kernels run it from N = 9)
//   GatePass       one step's fused element-wise work for N rows (activations, c_t, h_t)
//   PackedStep     the unfused step at small batches: RecurrentPacked, then GatePass (no re-copy of gates)
//   FusedStep      the same step fused in registers (fused_step_internal.h), as the kernels run it at small N
//   Step           one whole step as the kernel runs it: lstm_forward with T = 1
//   CellForward, CellBackward  one LSTMCell step and its backward (cell.h), as the Python cells call them
// Counters: GFLOP/s (2*M*K*N for products; none for the gate pass) and rows/s.
#include "../src/fused_step_internal.h"
#include "../src/gemm_internal.h"
#include "../src/lstm_internal.h"
#include "../src/packed_gemm_internal.h"
#include "../src/panel_gemm_internal.h"
#include "lstm_ext/cell.h"
#include "lstm_ext/lstm.h"
#include "lstm_ext/threads.h"

#include <benchmark/benchmark.h>

#include <cstdlib>
#include <random>

namespace {

using lstm_ext::Index;
using Matrix = lstm_ext::RowMatrix<float>;

Matrix random_matrix(Index rows, Index cols) {
  std::mt19937 gen(7);
  std::uniform_real_distribution<float> u(-0.1f, 0.1f);
  Matrix m(rows, cols);
  for (Index i = 0; i < m.size(); ++i) m.data()[i] = u(gen);
  return m;
}

void gemm_counters(benchmark::State& state, double m, double k, double n) {
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * m * k * n * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// 0: Eigen, 1: OpenBLAS, 2: native (panel_gemm_internal.h).
lstm_ext::GemmBackend backend_arg(benchmark::State& state, int64_t arg) {
  if (arg == 1 && !lstm_ext::openblas_available()) state.SkipWithError("this build has no OpenBLAS");
  if (arg == 2) return lstm_ext::GemmBackend::kNative;
  return arg == 1 ? lstm_ext::GemmBackend::kOpenBlas : lstm_ext::GemmBackend::kEigen;
}

// Args: T, N, I, H, backend.
void BM_InputGemm(benchmark::State& state) {
  const Index T = state.range(0), N = state.range(1), I = state.range(2), G = 4 * state.range(3);
  const lstm_ext::GemmBackend backend = backend_arg(state, state.range(4));
  const Matrix x = random_matrix(T * N, I), w = random_matrix(G, I);
  Matrix out(T * N, G);
  for (auto _ : state) {
    lstm_ext::detail::gemm_on(backend, false, true, T * N, G, I, x.data(), I, w.data(), I, false, out.data(), G);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  gemm_counters(state, double(T * N), double(I), double(G));
}

// Args: T, N, I, H, backend.
void BM_WeightGradGemm(benchmark::State& state) {
  const Index T = state.range(0), N = state.range(1), I = state.range(2), G = 4 * state.range(3);
  const lstm_ext::GemmBackend backend = backend_arg(state, state.range(4));
  const Matrix d_gates = random_matrix(T * N, G), x = random_matrix(T * N, I);
  Matrix dw(G, I);
  for (auto _ : state) {
    lstm_ext::detail::gemm_on(backend, true, false, G, I, T * N, d_gates.data(), G, x.data(), I, false, dw.data(), I);
    benchmark::DoNotOptimize(dw.data());
    benchmark::ClobberMemory();
  }
  gemm_counters(state, double(G), double(T * N), double(I));
}

// Args: N, H, misaligned (0: the weights 64-byte aligned; 1: 16 bytes past, as a NumPy array may be).
void BM_RecurrentGemm(benchmark::State& state) {
  const Index N = state.range(0), H = state.range(1), G = 4 * H;
  const Index shift = state.range(2) != 0 ? 4 : 0;
  const Matrix h = random_matrix(N, H);
  const Matrix w_store = random_matrix(G * H + 16, 1);
  const lstm_ext::ConstMatrixMap<float> w(w_store.data() + shift, G, H);
  Matrix out = random_matrix(N, G);
  for (auto _ : state) {
    if (N == 1) {
      lstm_ext::RowVectorMap<float>(out.data(), G).noalias() += h.row(0) * w.transpose();
    } else {
      out.noalias() += h * w.transpose();
    }
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  gemm_counters(state, double(N), double(H), double(G));
}

// Args: N, H: the same product on weights packed once (PackedWeights), as the kernels run it per step.
void BM_RecurrentPacked(benchmark::State& state) {
  const Index N = state.range(0), H = state.range(1), G = 4 * H;
  const Matrix h = random_matrix(N, H), w = random_matrix(G, H);
  Matrix out = random_matrix(N, G);
  const lstm_ext::detail::PackedWeights<float> packed(w.data(), G, H, H, false);
  lstm_ext::detail::Buffer<float> scratch(packed.scratch_size());
  for (auto _ : state) {
    packed.multiply_add(N, h.data(), H, out.data(), G, scratch.data());
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  gemm_counters(state, double(N), double(H), double(G));
}

// Args: N, H: the same product on the panel kernel.
void BM_RecurrentPanel(benchmark::State& state) {
  const Index N = state.range(0), H = state.range(1), G = 4 * H;
  const Matrix h = random_matrix(N, H), w = random_matrix(G, H);
  Matrix out = random_matrix(N, G);
  const lstm_ext::detail::PanelWeights packed(w.data(), G, H, H, false);
  for (auto _ : state) {
    packed.multiply_add(N, h.data(), H, out.data(), G);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  gemm_counters(state, double(N), double(H), double(G));
}

// Args: N, H.
void BM_GatePass(benchmark::State& state) {
  const Index N = state.range(0), H = state.range(1), G = 4 * H;
  const Matrix gates0 = random_matrix(N, G);
  Matrix gates = gates0, c = random_matrix(N, H), h(N, H);
  lstm_ext::detail::GateScratch<float> scratch(G, H);
  for (auto _ : state) {
    state.PauseTiming();
    gates = gates0;  // the pass activates in place
    state.ResumeTiming();
    lstm_ext::detail::gate_pass_forward(N, H, gates.data(), c.data(), c.data(), h.data(), H, scratch);
    benchmark::DoNotOptimize(h.data());
    benchmark::ClobberMemory();
  }
  state.counters["rows/s"] = benchmark::Counter(double(N), benchmark::Counter::kIsIterationInvariantRate);
}

// Args: N, H: the recurrent product then the gate pass, on the same buffers, as the unfused kernel runs a step.
void BM_PackedStep(benchmark::State& state) {
  const Index N = state.range(0), H = state.range(1), G = 4 * H;
  const Matrix h = random_matrix(N, H), w = random_matrix(G, H), proj = random_matrix(N, G);
  Matrix gates = proj, c = random_matrix(N, H), h_out(N, H);
  const lstm_ext::detail::PackedWeights<float> packed(w.data(), G, H, H, false);
  lstm_ext::detail::Buffer<float> scratch(packed.scratch_size());
  lstm_ext::detail::GateScratch<float> gate_scratch(G, H);
  for (auto _ : state) {
    packed.multiply_add(N, h.data(), H, gates.data(), G, scratch.data());
    lstm_ext::detail::gate_pass_forward(N, H, gates.data(), c.data(), c.data(), h_out.data(), H, gate_scratch);
    benchmark::DoNotOptimize(h_out.data());
    benchmark::ClobberMemory();
  }
  gemm_counters(state, double(N), double(H), double(G));
}

// Args: N, H: the same step fused (the gates re-activated each iteration: only the timing matters).
void BM_FusedStep(benchmark::State& state) {
  const Index N = state.range(0), H = state.range(1), G = 4 * H;
  const Matrix h = random_matrix(N, H), w = random_matrix(G, H);
  Matrix gates = random_matrix(N, G), c = random_matrix(N, H), h_out(N, H);
  const lstm_ext::detail::FusedLstmStep fused(w.data(), H, H, 0, H);
  for (auto _ : state) {
    fused.run(N, h.data(), H, gates.data(), c.data(), c.data(), h_out.data(), H);
    benchmark::DoNotOptimize(h_out.data());
    benchmark::ClobberMemory();
  }
  gemm_counters(state, double(N), double(H), double(G));
}

// Args: N, I, H: one inference step through the public kernel.
void BM_Step(benchmark::State& state) {
  const Index N = state.range(0), I = state.range(1), H = state.range(2), G = 4 * H;
  const Matrix x = random_matrix(N, I), w_ih = random_matrix(G, I), w_hh = random_matrix(G, H);
  const Matrix bias = random_matrix(1, G), h0 = random_matrix(N, H), c0 = random_matrix(N, H);
  Matrix y(N, H), c_n(N, H);
  const lstm_ext::LstmDims dims{1, N, I, H};
  for (auto _ : state) {
    lstm_ext::lstm_forward<float>(dims, {w_ih.data(), w_hh.data(), bias.data()}, x.data(), h0.data(), c0.data(),
                                  y.data(), nullptr, c_n.data(), {});
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  gemm_counters(state, double(N), double(I + H), double(G));
}

// Args: N, I, H: one training cell step (lstm_cell_forward, keeping the gates), then its backward.
struct CellCase {
  Index N, I, H, G;
  Matrix x, w_ih, w_hh, b_ih, b_hh, h0, c0, h1, c1, gates, dh1, dc1, dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh;
  explicit CellCase(const benchmark::State& state)
      : N(state.range(0)), I(state.range(1)), H(state.range(2)), G(4 * H), x(random_matrix(N, I)),
        w_ih(random_matrix(G, I)), w_hh(random_matrix(G, H)), b_ih(random_matrix(1, G)), b_hh(random_matrix(1, G)),
        h0(random_matrix(N, H)), c0(random_matrix(N, H)), h1(N, H), c1(N, H), gates(N, G),
        dh1(random_matrix(N, H)), dc1(random_matrix(N, H)), dx(N, I), dh0(N, H), dc0(N, H), dw_ih(G, I),
        dw_hh(G, H), db_ih(1, G), db_hh(1, G) {}
  lstm_ext::CellDims dims() const { return {N, I, H}; }
  lstm_ext::CellWeights<float> weights() const { return {w_ih.data(), w_hh.data(), b_ih.data(), b_hh.data()}; }
  void forward() {
    lstm_ext::lstm_cell_forward<float>(dims(), weights(), x.data(), h0.data(), c0.data(), h1.data(), c1.data(),
                                       gates.data());
  }
  void backward() {
    lstm_ext::lstm_cell_backward<float>(dims(), weights(), x.data(), h0.data(), c0.data(), gates.data(), dh1.data(),
                                        dc1.data(), dx.data(), dh0.data(), dc0.data(),
                                        {dw_ih.data(), dw_hh.data(), db_ih.data(), db_hh.data()}, false);
  }
};

void BM_CellForward(benchmark::State& state) {
  CellCase cell(state);
  for (auto _ : state) {
    cell.forward();
    benchmark::DoNotOptimize(cell.h1.data());
    benchmark::ClobberMemory();
  }
  gemm_counters(state, double(cell.N), double(cell.I + cell.H), double(cell.G));
}

void BM_CellBackward(benchmark::State& state) {
  CellCase cell(state);
  cell.forward();
  for (auto _ : state) {
    cell.backward();
    benchmark::DoNotOptimize(cell.dx.data());
    benchmark::ClobberMemory();
  }
  gemm_counters(state, 2.0 * double(cell.N), double(cell.I + cell.H), double(cell.G));  // dx/dh and dW
}

// The grid's shapes s1, s2, s3, s4, s5, each on Eigen (0), OpenBLAS (1) and native (2).
void grid_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"T", "N", "I", "H", "blas"});
  for (int64_t backend : {0, 1, 2}) {
    b->Args({100, 1, 128, 128, backend})->Args({100, 32, 256, 256, backend})->Args({100, 64, 512, 512, backend});
    b->Args({50, 128, 1024, 1024, backend})->Args({1000, 1, 64, 64, backend});
  }
}
BENCHMARK(BM_InputGemm)->Apply(grid_shapes)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_WeightGradGemm)->Apply(grid_shapes)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_RecurrentGemm)
    ->ArgNames({"N", "H", "misaligned"})
    ->ArgsProduct({{1}, {64, 128}, {0, 1}})
    ->Args({4, 128, 0})->Args({16, 256, 0})->Args({32, 256, 0})->Args({32, 512, 0})->Args({64, 512, 0})->Args({128, 1024, 0})
    ->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_RecurrentPacked)
    ->ArgNames({"N", "H"})
    ->Args({1, 64})->Args({1, 128})->Args({4, 128})->Args({16, 256})->Args({32, 256})->Args({32, 512})
    ->Args({64, 512})->Args({128, 1024})
    ->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_RecurrentPanel)
    ->ArgNames({"N", "H"})
    ->Args({1, 64})->Args({1, 128})->Args({4, 128})->Args({16, 256})->Args({32, 256})->Args({32, 512})
    ->Args({64, 512})->Args({128, 1024})
    ->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_GatePass)
    ->ArgNames({"N", "H"})
    ->Args({1, 64})->Args({1, 128})->Args({32, 256})->Args({64, 512})
    ->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_PackedStep)
    ->ArgNames({"N", "H"})
    ->ArgsProduct({{1, 2, 4, 8, 16, 32}, {32, 64, 128, 256, 512}})
    ->UseRealTime();
BENCHMARK(BM_FusedStep)
    ->ArgNames({"N", "H"})
    ->ArgsProduct({{1, 2, 4, 8, 16, 32}, {32, 64, 128, 256, 512}})
    ->UseRealTime();
BENCHMARK(BM_Step)
    ->ArgNames({"N", "I", "H"})
    ->Args({1, 128, 128})->Args({1, 64, 64})->Args({32, 256, 256})
    ->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_CellForward)->ArgNames({"N", "I", "H"})->Args({1, 128, 128})->Args({8, 128, 128})->UseRealTime();
BENCHMARK(BM_CellBackward)->ArgNames({"N", "I", "H"})->Args({1, 128, 128})->Args({8, 128, 128})->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  // The bare products here call Eigen directly: tell it the thread count the kernels would use.
  const char* env = std::getenv("LSTM_EXT_THREADS");
  lstm_ext::set_num_threads(env != nullptr ? std::atoi(env) : lstm_ext::get_num_threads());
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("lstm_ext threads", std::to_string(lstm_ext::get_num_threads()));
  if (lstm_ext::openblas_available())
    benchmark::AddCustomContext("openblas", lstm_ext::gemm_backend_description(lstm_ext::GemmBackend::kOpenBlas));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
