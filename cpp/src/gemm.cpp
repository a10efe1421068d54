// SPDX-License-Identifier: MIT
#include "gemm_internal.h"

#include "lstm_ext/threads.h"
#include "panel_gemm_internal.h"
#include "parallel_internal.h"
#include "thread_setup.h"

#include <algorithm>
#include <atomic>
#include <climits>
#include <mutex>
#include <optional>
#include <type_traits>

#if defined(_OPENMP)
#include <omp.h>
#endif

#if defined(LSTM_EXT_HAVE_OPENBLAS)
#include <cblas.h>  // scipy-openblas32's: every symbol carries the scipy_ prefix
extern "C" void scipy_openblas_set_num_threads(int num_threads);
extern "C" char* scipy_openblas_get_config(void);
#endif

namespace lstm_ext {
namespace {

std::atomic<GemmBackend> g_backend{GemmBackend::kNative};

// Below this many multiply-adds per thread a fork costs more than it saves (~20 us of work at 50 GFLOP/s).
constexpr double kMinWorkPerThread = double(1 << 19);
// Slices start at multiples of this many rows or columns, so each slice's edges fall on whole micro-kernel
// tiles as the unsplit product's do.
constexpr Index kSliceGrain = 32;
// Up to this size of packed op(B), the threads of a product split by rows each pack all of it (gemm_native).
constexpr Index kOwnCopyBytes = Index(512) << 10;

// How many threads a product of m x n x k multiply-adds should run on: get_num_threads(), fewer where a
// thread would get less than kMinWorkPerThread, 1 inside a parallel region.
Index threads_for(Index m, Index n, Index k) {
  const Index threads = detail::in_parallel_region() ? 1 : get_num_threads();
  const double work = double(m) * double(n) * double(k);
  return std::min<Index>(threads, std::max<Index>(1, Index(work / kMinWorkPerThread)));
}

// The native backend, float: op(B) packed once into column panels, each thread a range of C's rows (or, for
// a C of few rows, of its panels) on the register-blocked kernel of panel_gemm_internal.h. The threads pack
// op(B) together first (at s3 op(B) of the weight gradient is the whole [6400, 512] input).
// op(B) is [k, n]: B stored [n, k] when trans_b (op(B) = B^T), else [k, n]. `b` null: `packed` holds op(B)
// already (SharedRhs), else the threads pack it first.
void gemm_native(bool trans_a, bool trans_b, Index m, Index n, Index k, const float* a, Index lda, const float* b,
                 Index ldb, bool accumulate, float* c, Index ldc, detail::PanelWeights& packed) {
  const Index wanted = threads_for(m, n, k), panels = packed.panels();
  const bool by_rows = m >= wanted * kSliceGrain || panels < wanted;
  const Index parts = by_rows ? std::max<Index>(1, std::min<Index>(wanted, m / kSliceGrain))
                              : std::min<Index>(wanted, panels);
  auto rows = [&](Index i) { return i == parts ? m : (m * i / parts) / kSliceGrain * kSliceGrain; };
  auto panel = [&](Index i) { return std::min(panels, panels * i / parts); };
  auto part = [&](const detail::PanelWeights& w, Index j) {
    if (by_rows) w.product(accumulate, trans_a, rows(j), rows(j + 1), 0, panels, a, lda, c, ldc);
    else w.product(accumulate, trans_a, 0, m, panel(j), panel(j + 1), a, lda, c, ldc);
  };
  if (parts <= 1) {
    if (b != nullptr) packed.pack(b, ldb, !trans_b, 0, panels);
    part(packed, 0);
    return;
  }
  // A small op(B) split by rows: each thread packs all of it for itself (the calling thread into `packed`).
  // Packed together, each thread would read the panels the other packed, and the next call would rewrite
  // lines the other core read last, waiting on that core for each (cpp/src/parallel_internal.h, run_ahead).
  const bool own_copies = b != nullptr && by_rows && packed.size() * Index(sizeof(float)) <= kOwnCopyBytes;
#if defined(_OPENMP)
#pragma omp parallel num_threads(static_cast<int>(parts))
  {
    const Index team = omp_get_num_threads(), me = omp_get_thread_num();
    detail::Workspace<float> storage;
    std::optional<detail::PanelWeights> own;
    detail::PanelWeights& mine = own_copies && me > 0 ? own.emplace(n, k, storage) : packed;
    if (own_copies) {
      mine.pack(b, ldb, !trans_b, 0, panels);
    } else if (b != nullptr) {
      packed.pack(b, ldb, !trans_b, panels * me / team, panels * (me + 1) / team);
#pragma omp barrier
    }
    for (Index j = me; j < parts; j += team) part(mine, j);
  }
#else
  if (b != nullptr) packed.pack(b, ldb, !trans_b, 0, panels);
  for (Index j = 0; j < parts; ++j) part(packed, j);
#endif
}

// The native backend, float, packing op(B) for this product only, into a block of the cache: allocated afresh
// each call, the pages of a few hundred KB were mapped and faulted in again every time (glibc trims the freed
// heap), 0.19 ms on a T = 1 forward whose arithmetic takes 0.03 ms.
void gemm_native(bool trans_a, bool trans_b, Index m, Index n, Index k, const float* a, Index lda, const float* b,
                 Index ldb, bool accumulate, float* c, Index ldc) {
  detail::Workspace<float> storage;
  detail::PanelWeights packed(n, k, storage);
  gemm_native(trans_a, trans_b, m, n, k, a, lda, b, ldb, accumulate, c, ldc, packed);
}

template <typename Scalar, typename OpA, typename OpB>
void eigen_product(const OpA& a, const OpB& b, bool accumulate, Scalar* c, Index m, Index n, Index ldc) {
  StridedMatrixMap<Scalar> out(c, m, n, Eigen::OuterStride<>(ldc));
  if (accumulate) out.noalias() += a * b;
  else out.noalias() = a * b;
}

template <typename Scalar>
void gemm_eigen(bool trans_a, bool trans_b, Index m, Index n, Index k, const Scalar* a, Index lda, const Scalar* b,
                Index ldb, bool accumulate, Scalar* c, Index ldc) {
  using Map = ConstStridedMatrixMap<Scalar>;
  const Map a_map(a, trans_a ? k : m, trans_a ? m : k, Eigen::OuterStride<>(lda));
  const Map b_map(b, trans_b ? n : k, trans_b ? k : n, Eigen::OuterStride<>(ldb));
  // Eigen spreads the product over its own threads (Eigen::setNbThreads), single-threaded inside a parallel region.
  if (trans_a && trans_b) eigen_product<Scalar>(a_map.transpose(), b_map.transpose(), accumulate, c, m, n, ldc);
  else if (trans_a) eigen_product<Scalar>(a_map.transpose(), b_map, accumulate, c, m, n, ldc);
  else if (trans_b) eigen_product<Scalar>(a_map, b_map.transpose(), accumulate, c, m, n, ldc);
  else eigen_product<Scalar>(a_map, b_map, accumulate, c, m, n, ldc);
}

// A product of a depth too small for a GEMM kernel, which packs its operands and runs tiles over k: a few rows
// (the weight gradients of one sequence over a few steps) are rank-k updates of c's rows, where the product
// would run on one thread anyway. At T = 1, N = 1, I = H = 128 the LSTM backward's two weight gradients took
// 20 of its 35 us in the packed kernel. Every backend, one thread: the same bits whatever the backend or
// thread count. (A single row of c is left to the kernels: the native kernel's rows do not depend on the rows
// computed with them, which chunked inference relies on; callers with one row use row_times_w/row_times_wt.)
// Returns false when the product is not thin.
constexpr Index kThinDepth = 8;

template <typename Scalar>
bool thin_product(bool trans_a, bool trans_b, Index m, Index n, Index k, const Scalar* a, Index lda, const Scalar* b,
                  Index ldb, bool accumulate, Scalar* c, Index ldc) {
  if (k > kThinDepth || trans_b || double(m) * double(n) * double(k) >= 2 * kMinWorkPerThread) return false;
  using Row = Eigen::Map<Eigen::Array<Scalar, 1, Eigen::Dynamic>>;
  using ConstRow = Eigen::Map<const Eigen::Array<Scalar, 1, Eigen::Dynamic>>;
  for (Index i = 0; i < m; ++i) {
    Row out(c + i * ldc, n);
    const auto a_at = [&](Index kk) { return trans_a ? a[kk * lda + i] : a[i * lda + kk]; };
    if (!accumulate) out = a_at(0) * ConstRow(b, n);
    for (Index kk = accumulate ? 0 : 1; kk < k; ++kk) out += a_at(kk) * ConstRow(b + kk * ldb, n);
  }
  return true;
}

#if defined(LSTM_EXT_HAVE_OPENBLAS)
// OpenBLAS runs on the calling thread only: the split over threads is ours (as in the time loops), so there
// is one thread pool, not OpenBLAS's spinning beside OpenMP's.
void ensure_openblas_single_threaded() {
  static std::once_flag once;
  std::call_once(once, [] { scipy_openblas_set_num_threads(1); });
}

void blas_call(bool ta, bool tb, Index m, Index n, Index k, const float* a, Index lda, const float* b, Index ldb,
               float beta, float* c, Index ldc) {
  scipy_cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    static_cast<blasint>(m), static_cast<blasint>(n), static_cast<blasint>(k), 1.0f, a,
                    static_cast<blasint>(lda), b, static_cast<blasint>(ldb), beta, c, static_cast<blasint>(ldc));
}

void blas_call(bool ta, bool tb, Index m, Index n, Index k, const double* a, Index lda, const double* b, Index ldb,
               double beta, double* c, Index ldc) {
  scipy_cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    static_cast<blasint>(m), static_cast<blasint>(n), static_cast<blasint>(k), 1.0, a,
                    static_cast<blasint>(lda), b, static_cast<blasint>(ldb), beta, c, static_cast<blasint>(ldc));
}

bool fits_blasint(std::initializer_list<Index> sizes) {
  return std::all_of(sizes.begin(), sizes.end(), [](Index s) { return s <= INT_MAX; });
}

template <typename Scalar>
void gemm_openblas(bool trans_a, bool trans_b, Index m, Index n, Index k, const Scalar* a, Index lda,
                   const Scalar* b, Index ldb, bool accumulate, Scalar* c, Index ldc) {
  ensure_openblas_single_threaded();
  const Scalar beta = accumulate ? Scalar(1) : Scalar(0);
  const Index wanted = threads_for(m, n, k);
  // Split C by rows when it has enough of them, else by columns; each slice a single-threaded call.
  const bool by_rows = m >= n || n < wanted * kSliceGrain;
  const Index extent = by_rows ? m : n;
  const Index parts = std::max<Index>(1, std::min<Index>(wanted, extent / kSliceGrain));
  if (parts == 1) {
    blas_call(trans_a, trans_b, m, n, k, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  auto bound = [&](Index j) {
    const Index raw = extent * j / parts;
    return j == parts ? extent : raw - raw % kSliceGrain;
  };
#if defined(_OPENMP)
#pragma omp parallel for num_threads(static_cast<int>(parts)) schedule(static, 1)
#endif
  for (Index j = 0; j < parts; ++j) {
    const Index lo = bound(j), count = bound(j + 1) - lo;
    if (by_rows) {  // rows lo.. of op(A) and of C
      const Scalar* a_lo = trans_a ? a + lo : a + lo * lda;
      blas_call(trans_a, trans_b, count, n, k, a_lo, lda, b, ldb, beta, c + lo * ldc, ldc);
    } else {  // columns lo.. of op(B) and of C
      const Scalar* b_lo = trans_b ? b + lo * ldb : b + lo;
      blas_call(trans_a, trans_b, m, count, k, a, lda, b_lo, ldb, beta, c + lo, ldc);
    }
  }
}
#endif

}  // namespace

bool openblas_available() {
#if defined(LSTM_EXT_HAVE_OPENBLAS)
  return true;
#else
  return false;
#endif
}

void set_gemm_backend(GemmBackend backend) {
  require(backend == GemmBackend::kEigen || backend == GemmBackend::kNative || openblas_available(),
          "set_gemm_backend",
          "this build of lstm_ext has no OpenBLAS (built with LSTM_EXT_BLAS=OFF or without the scipy-openblas32 "
          "wheel)");
  g_backend.store(backend);
}

GemmBackend get_gemm_backend() { return g_backend.load(); }

std::string gemm_backend_description(GemmBackend backend) {
  const std::string eigen = "eigen " + std::to_string(EIGEN_WORLD_VERSION) + "." +
                            std::to_string(EIGEN_MAJOR_VERSION) + "." + std::to_string(EIGEN_MINOR_VERSION);
  if (backend == GemmBackend::kEigen) return eigen;
  if (backend == GemmBackend::kNative) {
    return "native (float32: " + std::to_string(detail::PanelWeights::kRows) + "-row x " +
           std::to_string(detail::PanelWeights::kPanel) + "-column tiles, " +
           std::to_string(detail::kFloatPacket * 32) + "-bit packets; float64: " + eigen + ")";
  }
#if defined(LSTM_EXT_HAVE_OPENBLAS)
  return std::string("openblas ") + scipy_openblas_get_config();
#else
  require(false, "gemm_backend_description", "this build of lstm_ext has no OpenBLAS");
  return {};
#endif
}

namespace detail {

template <typename Scalar>
void gemm_on(GemmBackend backend, bool trans_a, bool trans_b, Index m, Index n, Index k, const Scalar* a, Index lda,
             const Scalar* b, Index ldb, bool accumulate, Scalar* c, Index ldc) {
  constexpr const char* kWhere = "gemm";
  require(m >= 0 && n >= 0 && k >= 0, kWhere, "negative size");
  require(lda >= std::max<Index>(1, trans_a ? m : k) && ldb >= std::max<Index>(1, trans_b ? k : n) &&
              ldc >= std::max<Index>(1, n),
          kWhere, "a leading dimension is smaller than its row");
  if (m == 0 || n == 0) return;
  if (k == 0) {  // an empty sum: BLAS may not touch the operands, and neither need we
    if (!accumulate) StridedMatrixMap<Scalar>(c, m, n, Eigen::OuterStride<>(ldc)).setZero();
    return;
  }
  if (thin_product(trans_a, trans_b, m, n, k, a, lda, b, ldb, accumulate, c, ldc)) return;
  ensure_threads_initialised();
  if constexpr (std::is_same_v<Scalar, float>) {
    if (backend == GemmBackend::kNative) {
      gemm_native(trans_a, trans_b, m, n, k, a, lda, b, ldb, accumulate, c, ldc);
      return;
    }
  }
#if defined(LSTM_EXT_HAVE_OPENBLAS)
  if (backend == GemmBackend::kOpenBlas && fits_blasint({m, n, k, lda, ldb, ldc})) {
    gemm_openblas(trans_a, trans_b, m, n, k, a, lda, b, ldb, accumulate, c, ldc);
    return;
  }
#else
  require(backend != GemmBackend::kOpenBlas, kWhere, "this build of lstm_ext has no OpenBLAS");
#endif
  gemm_eigen(trans_a, trans_b, m, n, k, a, lda, b, ldb, accumulate, c, ldc);
}

template <typename Scalar>
void gemm(bool trans_a, bool trans_b, Index m, Index n, Index k, const Scalar* a, Index lda, const Scalar* b,
          Index ldb, bool accumulate, Scalar* c, Index ldc) {
  gemm_on(get_gemm_backend(), trans_a, trans_b, m, n, k, a, lda, b, ldb, accumulate, c, ldc);
}

template <typename Scalar>
SharedRhs<Scalar>::SharedRhs(bool trans_b, Index n, Index k, const Scalar* b, Index ldb, Index uses)
    : trans_b_(trans_b), n_(n), k_(k), b_(b), ldb_(ldb) {
  ensure_threads_initialised();
  require(n >= 0 && k >= 0 && ldb >= std::max<Index>(1, trans_b ? k : n), "SharedRhs", "bad size or stride");
  if constexpr (std::is_same_v<Scalar, float>) {
    if (get_gemm_backend() == GemmBackend::kNative && uses > 1 && n > 0 && k > 0) {
      packed_ = std::make_unique<PanelWeights>(n, k);
      const Index panels = packed_->panels();
      // A copy, split over the threads from 1 MB (at s4, 16 MB).
      const bool split = n * k >= (Index(1) << 18) && !in_parallel_region();
      const Index parts = split ? std::min<Index>(get_num_threads(), panels) : 1;
      PanelWeights& packed = *packed_;
#if defined(_OPENMP)
#pragma omp parallel for num_threads(static_cast<int>(parts)) schedule(static, 1)
#endif
      for (Index j = 0; j < parts; ++j) packed.pack(b, ldb, !trans_b, panels * j / parts, panels * (j + 1) / parts);
    }
  }
}

template <typename Scalar>
SharedRhs<Scalar>::~SharedRhs() = default;

template <typename Scalar>
void SharedRhs<Scalar>::product(bool trans_a, Index m, const Scalar* a, Index lda, bool accumulate, Scalar* c,
                                Index ldc) const {
  if constexpr (std::is_same_v<Scalar, float>) {
    if (packed_ != nullptr && m > 0) {
      require(lda >= std::max<Index>(1, trans_a ? m : k_) && ldc >= std::max<Index>(1, n_), "SharedRhs::product",
              "a leading dimension is smaller than its row");
      // The bits gemm gives: its thin products (trans_b false, k <= 8) do not read the packed copy.
      if (thin_product(trans_a, trans_b_, m, n_, k_, a, lda, b_, ldb_, accumulate, c, ldc)) return;
      ensure_threads_initialised();
      gemm_native(trans_a, trans_b_, m, n_, k_, a, lda, nullptr, ldb_, accumulate, c, ldc, *packed_);
      return;
    }
  }
  gemm(trans_a, trans_b_, m, n_, k_, a, lda, b_, ldb_, accumulate, c, ldc);
}

template class SharedRhs<float>;
template class SharedRhs<double>;

#define LSTM_EXT_INSTANTIATE(Scalar)                                                                             \
  template void gemm_on<Scalar>(GemmBackend, bool, bool, Index, Index, Index, const Scalar*, Index, const Scalar*, \
                                Index, bool, Scalar*, Index);                                                     \
  template void gemm<Scalar>(bool, bool, Index, Index, Index, const Scalar*, Index, const Scalar*, Index, bool,     \
                             Scalar*, Index);
LSTM_EXT_INSTANTIATE(float)
LSTM_EXT_INSTANTIATE(double)
#undef LSTM_EXT_INSTANTIATE

}  // namespace detail
}  // namespace lstm_ext
