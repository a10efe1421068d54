// SPDX-License-Identifier: MIT
// Microbenchmarks of the LSTM core: inference forward, training forward and backward, float32, on the
// shapes of the performance grid. Counters: GFLOP/s (forward 2*T*N*4H*(I+H) FLOPs, backward twice that)
// and steps/s. Threads: LSTM_EXT_THREADS or the CPU count; LSTM_EXT_GEMM=eigen for the Eigen-only products.
#include "lstm_ext/backend.h"
#include "lstm_ext/lstm.h"
#include "lstm_ext/threads.h"

#include <benchmark/benchmark.h>

#include <cstdlib>
#include <random>
#include <string>
#include <vector>

namespace {

using lstm_ext::Index;
using lstm_ext::LstmDims;

struct Problem {
  explicit Problem(const LstmDims& d)
      : dims(d),
        w_ih(4 * d.hidden * d.input), w_hh(4 * d.hidden * d.hidden), bias(4 * d.hidden),
        x(d.steps * d.batch * d.input), h0(d.batch * d.hidden), c0(d.batch * d.hidden),
        y(d.steps * d.batch * d.hidden), h_n(d.batch * d.hidden), c_n(d.batch * d.hidden),
        gates(d.steps * d.batch * 4 * d.hidden), cells(d.steps * d.batch * d.hidden), dy(y.size()),
        dx(x.size()), dh0(h0.size()), dc0(c0.size()), dw_ih(w_ih.size()), dw_hh(w_hh.size()), dbias(bias.size()) {
    std::mt19937 gen(42);
    std::uniform_real_distribution<float> u(-0.1f, 0.1f);
    for (auto* v : {&w_ih, &w_hh, &bias, &x, &h0, &c0, &dy})
      for (float& e : *v) e = u(gen);
  }
  lstm_ext::LstmWeights<float> weights() const { return {w_ih.data(), w_hh.data(), bias.data()}; }
  lstm_ext::LstmCache<float> cache() { return {gates.data(), cells.data()}; }
  double forward_flops() const {
    return 2.0 * dims.steps * dims.batch * 4 * dims.hidden * double(dims.input + dims.hidden);
  }

  LstmDims dims;
  std::vector<float> w_ih, w_hh, bias, x, h0, c0, y, h_n, c_n, gates, cells, dy, dx, dh0, dc0, dw_ih, dw_hh, dbias;
};

LstmDims dims_of(const benchmark::State& state) {
  return {state.range(0), state.range(1), state.range(2), state.range(3)};
}

void set_counters(benchmark::State& state, double flops_per_iter, Index steps) {
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops_per_iter * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["steps/s"] = benchmark::Counter(double(steps), benchmark::Counter::kIsIterationInvariantRate);
}

void BM_ForwardInference(benchmark::State& state) {
  Problem p(dims_of(state));
  for (auto _ : state) {
    lstm_ext::lstm_forward<float>(p.dims, p.weights(), p.x.data(), p.h0.data(), p.c0.data(), p.y.data(),
                                  p.h_n.data(), p.c_n.data(), {});
    benchmark::DoNotOptimize(p.y.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, p.forward_flops(), p.dims.steps);
}

void BM_ForwardTraining(benchmark::State& state) {
  Problem p(dims_of(state));
  for (auto _ : state) {
    lstm_ext::lstm_forward<float>(p.dims, p.weights(), p.x.data(), p.h0.data(), p.c0.data(), p.y.data(),
                                  p.h_n.data(), p.c_n.data(), p.cache());
    benchmark::DoNotOptimize(p.y.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, p.forward_flops(), p.dims.steps);
}

void BM_Backward(benchmark::State& state) {
  Problem p(dims_of(state));
  lstm_ext::lstm_forward<float>(p.dims, p.weights(), p.x.data(), p.h0.data(), p.c0.data(), p.y.data(),
                                p.h_n.data(), p.c_n.data(), p.cache());
  const lstm_ext::LstmWeightGrads<float> grads{p.dw_ih.data(), p.dw_hh.data(), p.dbias.data()};
  for (auto _ : state) {
    lstm_ext::lstm_backward<float>(p.dims, p.weights(), p.x.data(), p.h0.data(), p.c0.data(), p.y.data(),
                                   p.cache(), p.dy.data(), nullptr, nullptr, p.dx.data(), p.dh0.data(),
                                   p.dc0.data(), grads);
    benchmark::DoNotOptimize(p.dx.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, 2.0 * p.forward_flops(), p.dims.steps);
}

// The performance grid: s1 (100,1,128,128), s2 (100,32,256,256), s3 (100,64,512,512), s5 (1000,1,64,64),
// one cell step (1,1,128,128), and a short sequence (8,1,256,256): the last two take the unpacked path; and
// two batches too small for the batch split that split each step's units instead (parallel_internal.h).
void grid(benchmark::internal::Benchmark* b) {
  b->ArgNames({"T", "N", "I", "H"});
  b->Args({100, 1, 128, 128})->Args({100, 32, 256, 256})->Args({100, 64, 512, 512});
  b->Args({1000, 1, 64, 64})->Args({1, 1, 128, 128})->Args({8, 1, 256, 256});
  b->Args({100, 1, 256, 256})->Args({100, 4, 512, 512});
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}

BENCHMARK(BM_ForwardInference)->Apply(grid);
BENCHMARK(BM_ForwardTraining)->Apply(grid);
BENCHMARK(BM_Backward)->Apply(grid);

}  // namespace

int main(int argc, char** argv) {
  if (const char* env = std::getenv("LSTM_EXT_THREADS")) lstm_ext::set_num_threads(std::atoi(env));
  // LSTM_EXT_GEMM=eigen: the products over all steps on Eigen instead of the default (OpenBLAS where built).
  if (const char* env = std::getenv("LSTM_EXT_GEMM"); env != nullptr && std::string(env) == "eigen")
    lstm_ext::set_gemm_backend(lstm_ext::GemmBackend::kEigen);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("lstm_ext threads", std::to_string(lstm_ext::get_num_threads()));
  benchmark::AddCustomContext("gemm", lstm_ext::gemm_backend_description(lstm_ext::get_gemm_backend()));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
