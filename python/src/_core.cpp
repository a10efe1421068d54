// SPDX-License-Identifier: MIT
// The one binding file: converts NumPy arrays to pointers and dims, checks ranks and sizes, allocates the
// outputs with the GIL held and releases the GIL around the core call. No numerics and no policy here:
// the Python layer (lstm_ext/*.py) validates user input with friendlier messages first; these checks are the
// safety net that keeps a wrong call from reaching the core with inconsistent buffers.
#include <pybind11/pybind11.h>
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include "lstm_ext/backend.h"
#include "lstm_ext/gru.h"
#include "lstm_ext/lstm.h"
#include "lstm_ext/memory.h"
#include "lstm_ext/threads.h"
#include "lstm_ext/cell.h"  // after the others: keeps this change apart from main's include edits

#include <algorithm>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace py = pybind11;
using lstm_ext::Index;

namespace {

template <typename Scalar>
using Array = py::array_t<Scalar, py::array::c_style>;
template <typename Scalar>
using OptArray = std::optional<Array<Scalar>>;

std::string shape_string(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t k = 0; k < a.ndim(); ++k) s += (k ? ", " : "") + std::to_string(a.shape(k));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

std::string shape_string(std::initializer_list<Index> dims) {
  std::string s = "(";
  bool first = true;
  for (Index d : dims) {
    s += (first ? "" : ", ") + std::to_string(d);
    first = false;
  }
  return s + (dims.size() == 1 ? ",)" : ")");
}

// The kernels load whole elements: an array whose data is not aligned to its element size (a view into a
// byte buffer at an odd offset) would be undefined behaviour in C++. The Python layer copies such arrays.
void expect_aligned(const char* name, const py::array& a) {
  if (reinterpret_cast<std::uintptr_t>(a.data()) % static_cast<std::uintptr_t>(a.itemsize()) != 0)
    throw std::invalid_argument(std::string(name) + ": data not aligned to its " + std::to_string(a.itemsize()) +
                                "-byte elements; pass a copy (a.copy())");
}

void expect_shape(const char* name, const py::array& a, std::initializer_list<Index> dims) {
  expect_aligned(name, a);
  bool ok = a.ndim() == static_cast<py::ssize_t>(dims.size());
  py::ssize_t k = 0;
  for (Index d : dims) ok = ok && a.shape(k++) == d;
  if (!ok) {
    throw std::invalid_argument(std::string(name) + ": expected shape " + shape_string(dims) + ", got " +
                                shape_string(a));
  }
}

void expect_rank(const char* name, const py::array& a, py::ssize_t rank) {
  expect_aligned(name, a);
  if (a.ndim() != rank) {
    throw std::invalid_argument(std::string(name) + ": expected " + std::to_string(rank) + " dimensions, got " +
                                shape_string(a));
  }
}

template <typename Scalar>
const Scalar* data_or_null(const OptArray<Scalar>& a) {
  return a ? a->data() : nullptr;
}

template <typename Scalar>
using ArrayList = std::vector<Array<Scalar>>;
template <typename Scalar>
using OptArrayList = std::optional<ArrayList<Scalar>>;
using Sizes = std::optional<py::array_t<std::int64_t, py::array::c_style>>;

// What every stack call shares besides the weights: the stack's dims (from x, batch_sizes and the recurrent
// weights) and the dropout masks, each checked against them.
struct StackShape {
  lstm_ext::StackDims dims;
  Index rows = 0;  // R: T*N dense, sum(batch_sizes) packed
  Index out = 0;   // H_out
  Index count() const { return dims.layers * dims.directions; }
  Index width(Index k) const { return k < dims.directions ? dims.input : dims.directions * out; }
  // A [T, N, F] dense or [R, F] packed array, as x is.
  std::vector<Index> seq_shape(Index features) const {
    if (dims.batch_sizes == nullptr) return {dims.steps, dims.batch, features};
    return {rows, features};
  }
  void expect_seq(const char* name, const py::array& a, Index features) const {
    if (dims.batch_sizes == nullptr) expect_shape(name, a, {dims.steps, dims.batch, features});
    else expect_shape(name, a, {rows, features});
  }
  void expect_state(const char* name, const py::array& a, Index features) const {
    expect_shape(name, a, {count(), dims.batch, features});
  }
};

template <typename Scalar>
StackShape stack_shape(const Array<Scalar>& x, const Sizes& batch_sizes, const ArrayList<Scalar>& w_hh, Index layers,
                       Index directions, Index proj, bool reverse, Index gates) {
  if (layers < 1 || (directions != 1 && directions != 2))
    throw std::invalid_argument("layers must be >= 1 and directions 1 or 2");
  StackShape s;
  auto& d = s.dims;
  if (batch_sizes) {
    expect_rank("x", x, 2);
    expect_rank("batch_sizes", *batch_sizes, 1);
    if (batch_sizes->shape(0) < 1) throw std::invalid_argument("batch_sizes: expected at least one step");
    d.steps = batch_sizes->shape(0);
    d.batch = batch_sizes->data()[0];
    d.batch_sizes = batch_sizes->data();
    d.input = x.shape(1);
  } else {
    expect_rank("x", x, 3);
    d.steps = x.shape(0);
    d.batch = x.shape(1);
    d.input = x.shape(2);
  }
  d.layers = layers;
  d.directions = directions;
  d.proj = proj;
  d.reverse = reverse;
  const size_t count = static_cast<size_t>(lstm_ext::checked_product("layers", {layers, directions}));
  if (w_hh.size() != count) throw std::invalid_argument("expected " + std::to_string(count) + " arrays in w_hh");
  expect_rank("w_hh[0]", w_hh[0], 2);
  if (w_hh[0].shape(0) % gates != 0)
    throw std::invalid_argument("w_hh[0]: expected a multiple of " + std::to_string(gates) + " rows, got " +
                                shape_string(w_hh[0]));
  d.hidden = w_hh[0].shape(0) / gates;
  s.out = proj > 0 ? proj : d.hidden;
  s.rows = lstm_ext::sequence_rows("batch_sizes", d.steps, d.batch, d.batch_sizes);
  if (batch_sizes && x.shape(0) != s.rows)
    throw std::invalid_argument("x: expected " + std::to_string(s.rows) + " rows (the sum of batch_sizes), got " +
                                shape_string(x));
  return s;
}

// shape_of(k): the shape array k must have (a std::vector). The element's name ("w_ih[1]") is built only
// for an error: these checks run on every call.
template <typename Scalar, typename ShapeOf>
void expect_list(const char* name, const ArrayList<Scalar>& list, const StackShape& s, ShapeOf&& shape_of) {
  if (list.size() != static_cast<size_t>(s.count()))
    throw std::invalid_argument(std::string(name) + ": expected " + std::to_string(s.count()) + " arrays, got " +
                                std::to_string(list.size()));
  for (Index k = 0; k < s.count(); ++k) {
    const std::vector<Index> want = shape_of(k);
    bool ok = list[k].ndim() == static_cast<py::ssize_t>(want.size());
    for (size_t i = 0; ok && i < want.size(); ++i) ok = list[k].shape(i) == want[i];
    if (!ok) {
      const std::string at = std::string(name) + "[" + std::to_string(k) + "]";
      std::string w = "(";
      for (size_t i = 0; i < want.size(); ++i) w += (i ? ", " : "") + std::to_string(want[i]);
      throw std::invalid_argument(at + ": expected shape " + w + (want.size() == 1 ? ",)" : ")") + ", got " +
                                  shape_string(list[k]));
    }
  }
}

// The dropout of a stack; `variational` is the storage the returned struct points into.
template <typename Scalar>
lstm_ext::StackDropout<Scalar> stack_dropout(const StackShape& s, const OptArrayList<Scalar>& input_masks,
                                             const OptArrayList<Scalar>& recurrent_masks,
                                             const OptArray<Scalar>& inter_masks,
                                             std::vector<lstm_ext::DropoutMasks<Scalar>>& variational) {
  lstm_ext::StackDropout<Scalar> dropout;
  const Index N = s.dims.batch;
  if (input_masks) expect_list<Scalar>("input_masks", *input_masks, s, [&](Index k) { return std::vector<Index>{N, s.width(k)}; });
  if (recurrent_masks) expect_list<Scalar>("recurrent_masks", *recurrent_masks, s, [&](Index) { return std::vector<Index>{N, s.out}; });
  if (input_masks || recurrent_masks) {
    variational.resize(static_cast<size_t>(s.count()));
    for (Index k = 0; k < s.count(); ++k)
      variational[k] = {input_masks ? (*input_masks)[k].data() : nullptr,
                        recurrent_masks ? (*recurrent_masks)[k].data() : nullptr};
    dropout.variational = variational.data();
  }
  if (inter_masks) {
    expect_shape("inter_masks", *inter_masks, {s.dims.layers - 1, s.rows, s.dims.directions * s.out});
    if (s.dims.layers > 1) dropout.inter = inter_masks->data();
  }
  return dropout;
}

// A new C-contiguous array of the given shape. From lstm_ext::kCachedBlockMin bytes its data is a block of the
// core's cache (lstm_ext/memory.h), given back when the array dies: the next call of a training loop reuses
// those pages instead of faulting in a fresh mapping (about 40 000 faults per step at T=50, N=128, H=1024).
template <typename Scalar>
Array<Scalar> new_array(const std::vector<Index>& shape) {
  const std::vector<py::ssize_t> dims(shape.begin(), shape.end());
  std::size_t bytes = sizeof(Scalar);
  for (Index d : shape) {
    if (d < 0 || (d > 0 && bytes > std::numeric_limits<std::size_t>::max() / static_cast<std::size_t>(d)))
      throw std::bad_alloc();
    bytes *= static_cast<std::size_t>(d);
  }
  if (bytes < lstm_ext::kCachedBlockMin) return Array<Scalar>(dims);
  void* block = lstm_ext::allocate_block(bytes);
  py::capsule owner;
  try {
    owner = py::capsule(block, [](void* p) { lstm_ext::free_block(p); });
  } catch (...) {
    lstm_ext::free_block(block);
    throw;
  }
  return Array<Scalar>(dims, static_cast<Scalar*>(block), owner);
}

// A copy of `a` in a new array (as new_array): the training tape's own copies of the input and output.
template <typename Scalar>
Array<Scalar> copy_array(const Array<Scalar>& a) {
  expect_aligned("a", a);
  Array<Scalar> out = new_array<Scalar>(std::vector<Index>(a.shape(), a.shape() + a.ndim()));
  const Scalar* src = a.data();
  Scalar* dst = out.mutable_data();
  const py::ssize_t count = a.size();
  {
    py::gil_scoped_release release;
    std::copy_n(src, count, dst);
  }
  return out;
}

// ----------------------------------------------------------------------------------------------------------
// LSTM

template <typename Scalar>
struct LstmArgs {
  StackShape s;
  std::vector<lstm_ext::LstmWeights<Scalar>> weights;
  std::vector<lstm_ext::DropoutMasks<Scalar>> variational;
  lstm_ext::StackDropout<Scalar> dropout;
};

template <typename Scalar>
LstmArgs<Scalar> lstm_args(const Array<Scalar>& x, const ArrayList<Scalar>& w_ih, const ArrayList<Scalar>& w_hh,
                           const OptArrayList<Scalar>& bias, const OptArrayList<Scalar>& w_hr, const OptArray<Scalar>& h0,
                           const OptArray<Scalar>& c0, Index layers, Index directions, bool reverse,
                           const Sizes& batch_sizes, const OptArrayList<Scalar>& input_masks,
                           const OptArrayList<Scalar>& recurrent_masks, const OptArray<Scalar>& inter_masks) {
  LstmArgs<Scalar> a;
  Index proj = 0;
  if (w_hr) {
    if (w_hr->empty()) throw std::invalid_argument("w_hr: expected one array per (layer, direction)");
    expect_rank("w_hr[0]", (*w_hr)[0], 2);
    proj = (*w_hr)[0].shape(0);
  }
  a.s = stack_shape(x, batch_sizes, w_hh, layers, directions, proj, reverse, lstm_ext::kGatesLstm);
  const StackShape& s = a.s;
  const Index G = lstm_ext::kGatesLstm * s.dims.hidden, H = s.dims.hidden;
  expect_list<Scalar>("w_ih", w_ih, s, [&](Index k) { return std::vector<Index>{G, s.width(k)}; });
  expect_list<Scalar>("w_hh", w_hh, s, [&](Index) { return std::vector<Index>{G, s.out}; });
  if (bias) expect_list<Scalar>("bias", *bias, s, [&](Index) { return std::vector<Index>{G}; });
  if (w_hr) expect_list<Scalar>("w_hr", *w_hr, s, [&](Index) { return std::vector<Index>{proj, H}; });
  if (h0) s.expect_state("h0", *h0, s.out);
  if (c0) s.expect_state("c0", *c0, H);
  a.weights.resize(static_cast<size_t>(s.count()));
  for (Index k = 0; k < s.count(); ++k)
    a.weights[k] = {w_ih[k].data(), w_hh[k].data(), bias ? (*bias)[k].data() : nullptr, w_hr ? (*w_hr)[k].data() : nullptr};
  a.dropout = stack_dropout(s, input_masks, recurrent_masks, inter_masks, a.variational);
  return a;
}

template <typename Scalar>
py::tuple lstm_stack_forward(const Array<Scalar>& x, const ArrayList<Scalar>& w_ih, const ArrayList<Scalar>& w_hh,
                             const OptArrayList<Scalar>& bias, const OptArrayList<Scalar>& w_hr,
                             const OptArray<Scalar>& h0, const OptArray<Scalar>& c0, Index layers, Index directions,
                             bool reverse, bool training, const Sizes& batch_sizes,
                             const OptArrayList<Scalar>& input_masks, const OptArrayList<Scalar>& recurrent_masks,
                             const OptArray<Scalar>& inter_masks) {
  const LstmArgs<Scalar> a = lstm_args(x, w_ih, w_hh, bias, w_hr, h0, c0, layers, directions, reverse, batch_sizes,
                                       input_masks, recurrent_masks, inter_masks);
  const StackShape& s = a.s;
  Array<Scalar> y = new_array<Scalar>(s.seq_shape(directions * s.out));
  Array<Scalar> h_n = new_array<Scalar>({s.count(), s.dims.batch, s.out});
  Array<Scalar> c_n = new_array<Scalar>({s.count(), s.dims.batch, s.dims.hidden});
  py::object cache_out = py::none();
  lstm_ext::LstmStackCache<Scalar> cache;
  if (training) {
    const lstm_ext::LstmStackCacheSizes sizes = lstm_ext::lstm_stack_cache_sizes(s.dims);
    Array<Scalar> gates = new_array<Scalar>({sizes.gates}), cells = new_array<Scalar>({sizes.cells});
    Array<Scalar> hidden = new_array<Scalar>({sizes.hidden});
    cache = {gates.mutable_data(), cells.mutable_data(), layers > 1 ? hidden.mutable_data() : nullptr};
    cache_out = py::make_tuple(gates, cells, hidden);
  }
  Scalar* y_ptr = y.mutable_data();
  Scalar* h_n_ptr = h_n.mutable_data();
  Scalar* c_n_ptr = c_n.mutable_data();
  {
    py::gil_scoped_release release;
    lstm_ext::lstm_stack_forward<Scalar>(s.dims, a.weights.data(), x.data(), data_or_null(h0), data_or_null(c0),
                                         y_ptr, h_n_ptr, c_n_ptr, cache, a.dropout);
  }
  return py::make_tuple(y, h_n, c_n, cache_out);
}

template <typename Scalar>
py::tuple lstm_stack_backward(const Array<Scalar>& x, const ArrayList<Scalar>& w_ih, const ArrayList<Scalar>& w_hh,
                              const OptArrayList<Scalar>& bias, const OptArrayList<Scalar>& w_hr,
                              const OptArray<Scalar>& h0, const OptArray<Scalar>& c0, Index layers, Index directions,
                              bool reverse, const Sizes& batch_sizes, const OptArrayList<Scalar>& input_masks,
                              const OptArrayList<Scalar>& recurrent_masks, const OptArray<Scalar>& inter_masks,
                              const Array<Scalar>& y, const Array<Scalar>& gates, const Array<Scalar>& cells,
                              const Array<Scalar>& hidden, const Array<Scalar>& dy, const OptArray<Scalar>& dh_n,
                              const OptArray<Scalar>& dc_n) {
  const LstmArgs<Scalar> a = lstm_args(x, w_ih, w_hh, bias, w_hr, h0, c0, layers, directions, reverse, batch_sizes,
                                       input_masks, recurrent_masks, inter_masks);
  const StackShape& s = a.s;
  const lstm_ext::LstmStackCacheSizes sizes = lstm_ext::lstm_stack_cache_sizes(s.dims);
  const Index K = s.count(), G = lstm_ext::kGatesLstm * s.dims.hidden, H = s.dims.hidden;
  s.expect_seq("y", y, directions * s.out);
  s.expect_seq("dy", dy, directions * s.out);
  expect_shape("gates", gates, {sizes.gates});
  expect_shape("cells", cells, {sizes.cells});
  expect_shape("hidden", hidden, {sizes.hidden});
  if (dh_n) s.expect_state("dh_n", *dh_n, s.out);
  if (dc_n) s.expect_state("dc_n", *dc_n, H);

  Array<Scalar> dx = new_array<Scalar>(s.seq_shape(s.dims.input));
  Array<Scalar> dh0 = new_array<Scalar>({K, s.dims.batch, s.out});
  Array<Scalar> dc0 = new_array<Scalar>({K, s.dims.batch, H});
  py::list dw_ih_out, dw_hh_out, dbias_out, dw_hr_out;
  std::vector<lstm_ext::LstmWeightGrads<Scalar>> grads(static_cast<size_t>(K));
  for (Index k = 0; k < K; ++k) {
    Array<Scalar> dw_ih = new_array<Scalar>({G, s.width(k)}), dw_hh = new_array<Scalar>({G, s.out});
    grads[k] = {dw_ih.mutable_data(), dw_hh.mutable_data(), nullptr, nullptr};
    if (bias) {
      Array<Scalar> dbias = new_array<Scalar>({G});
      grads[k].dbias = dbias.mutable_data();
      dbias_out.append(dbias);
    }
    if (w_hr) {
      Array<Scalar> dw_hr = new_array<Scalar>({s.out, H});
      grads[k].dw_hr = dw_hr.mutable_data();
      dw_hr_out.append(dw_hr);
    }
    dw_ih_out.append(dw_ih);
    dw_hh_out.append(dw_hh);
  }
  // The cache is only read; the core's struct is shared with the forward, hence the const_cast.
  const lstm_ext::LstmStackCache<Scalar> cache{const_cast<Scalar*>(gates.data()), const_cast<Scalar*>(cells.data()),
                                               layers > 1 ? const_cast<Scalar*>(hidden.data()) : nullptr};
  Scalar* dx_ptr = dx.mutable_data();
  Scalar* dh0_ptr = dh0.mutable_data();
  Scalar* dc0_ptr = dc0.mutable_data();
  {
    py::gil_scoped_release release;
    lstm_ext::lstm_stack_backward<Scalar>(s.dims, a.weights.data(), x.data(), data_or_null(h0), data_or_null(c0),
                                          y.data(), cache, dy.data(), data_or_null(dh_n), data_or_null(dc_n), dx_ptr,
                                          dh0_ptr, dc0_ptr, grads.data(), a.dropout);
  }
  return py::make_tuple(dx, dh0, dc0, dw_ih_out, dw_hh_out, bias ? py::object(dbias_out) : py::none(),
                        w_hr ? py::object(dw_hr_out) : py::none());
}

// ----------------------------------------------------------------------------------------------------------
// GRU

template <typename Scalar>
struct GruArgs {
  StackShape s;
  std::vector<lstm_ext::GruWeights<Scalar>> weights;
  std::vector<lstm_ext::DropoutMasks<Scalar>> variational;
  lstm_ext::StackDropout<Scalar> dropout;
};

template <typename Scalar>
GruArgs<Scalar> gru_args(const Array<Scalar>& x, const ArrayList<Scalar>& w_ih, const ArrayList<Scalar>& w_hh,
                         const OptArrayList<Scalar>& b_ih, const OptArrayList<Scalar>& b_hh, const OptArray<Scalar>& h0,
                         Index layers, Index directions, bool reverse, bool reset_after, const Sizes& batch_sizes,
                         const OptArrayList<Scalar>& input_masks, const OptArrayList<Scalar>& recurrent_masks,
                         const OptArray<Scalar>& inter_masks) {
  GruArgs<Scalar> a;
  a.s = stack_shape(x, batch_sizes, w_hh, layers, directions, 0, reverse, lstm_ext::kGatesGru);
  const StackShape& s = a.s;
  const Index G = lstm_ext::kGatesGru * s.dims.hidden;
  if (b_ih.has_value() != b_hh.has_value()) throw std::invalid_argument("b_ih and b_hh: give both or neither");
  expect_list<Scalar>("w_ih", w_ih, s, [&](Index k) { return std::vector<Index>{G, s.width(k)}; });
  expect_list<Scalar>("w_hh", w_hh, s, [&](Index) { return std::vector<Index>{G, s.out}; });
  if (b_ih) expect_list<Scalar>("b_ih", *b_ih, s, [&](Index) { return std::vector<Index>{G}; });
  if (b_hh) expect_list<Scalar>("b_hh", *b_hh, s, [&](Index) { return std::vector<Index>{G}; });
  if (h0) s.expect_state("h0", *h0, s.out);
  a.weights.resize(static_cast<size_t>(s.count()));
  for (Index k = 0; k < s.count(); ++k)
    a.weights[k] = {w_ih[k].data(), w_hh[k].data(), b_ih ? (*b_ih)[k].data() : nullptr,
                    b_hh ? (*b_hh)[k].data() : nullptr, reset_after};
  a.dropout = stack_dropout(s, input_masks, recurrent_masks, inter_masks, a.variational);
  return a;
}

template <typename Scalar>
py::tuple gru_stack_forward(const Array<Scalar>& x, const ArrayList<Scalar>& w_ih, const ArrayList<Scalar>& w_hh,
                            const OptArrayList<Scalar>& b_ih, const OptArrayList<Scalar>& b_hh,
                            const OptArray<Scalar>& h0, Index layers, Index directions, bool reverse,
                            bool reset_after, bool training, const Sizes& batch_sizes,
                            const OptArrayList<Scalar>& input_masks, const OptArrayList<Scalar>& recurrent_masks,
                            const OptArray<Scalar>& inter_masks) {
  const GruArgs<Scalar> a = gru_args(x, w_ih, w_hh, b_ih, b_hh, h0, layers, directions, reverse, reset_after,
                                     batch_sizes, input_masks, recurrent_masks, inter_masks);
  const StackShape& s = a.s;
  Array<Scalar> y = new_array<Scalar>(s.seq_shape(directions * s.out));
  Array<Scalar> h_n = new_array<Scalar>({s.count(), s.dims.batch, s.out});
  py::object cache_out = py::none();
  lstm_ext::GruStackCache<Scalar> cache;
  if (training) {
    const lstm_ext::GruStackCacheSizes sizes = lstm_ext::gru_stack_cache_sizes(s.dims, reset_after);
    Array<Scalar> gates = new_array<Scalar>({sizes.gates}), hidden_n = new_array<Scalar>({sizes.hidden_n});
    Array<Scalar> hidden = new_array<Scalar>({sizes.hidden});
    cache = {gates.mutable_data(), reset_after ? hidden_n.mutable_data() : nullptr,
             layers > 1 ? hidden.mutable_data() : nullptr};
    cache_out = py::make_tuple(gates, hidden_n, hidden);
  }
  Scalar* y_ptr = y.mutable_data();
  Scalar* h_n_ptr = h_n.mutable_data();
  {
    py::gil_scoped_release release;
    lstm_ext::gru_stack_forward<Scalar>(s.dims, a.weights.data(), x.data(), data_or_null(h0), y_ptr, h_n_ptr, cache,
                                        a.dropout);
  }
  return py::make_tuple(y, h_n, cache_out);
}

template <typename Scalar>
py::tuple gru_stack_backward(const Array<Scalar>& x, const ArrayList<Scalar>& w_ih, const ArrayList<Scalar>& w_hh,
                             const OptArrayList<Scalar>& b_ih, const OptArrayList<Scalar>& b_hh,
                             const OptArray<Scalar>& h0, Index layers, Index directions, bool reverse,
                             bool reset_after, const Sizes& batch_sizes, const OptArrayList<Scalar>& input_masks,
                             const OptArrayList<Scalar>& recurrent_masks, const OptArray<Scalar>& inter_masks,
                             const Array<Scalar>& y, const Array<Scalar>& gates, const Array<Scalar>& hidden_n,
                             const Array<Scalar>& hidden, const Array<Scalar>& dy, const OptArray<Scalar>& dh_n) {
  const GruArgs<Scalar> a = gru_args(x, w_ih, w_hh, b_ih, b_hh, h0, layers, directions, reverse, reset_after,
                                     batch_sizes, input_masks, recurrent_masks, inter_masks);
  const StackShape& s = a.s;
  const lstm_ext::GruStackCacheSizes sizes = lstm_ext::gru_stack_cache_sizes(s.dims, reset_after);
  const Index K = s.count(), G = lstm_ext::kGatesGru * s.dims.hidden, H = s.dims.hidden;
  s.expect_seq("y", y, directions * H);
  s.expect_seq("dy", dy, directions * H);
  expect_shape("gates", gates, {sizes.gates});
  expect_shape("hidden_n", hidden_n, {sizes.hidden_n});
  expect_shape("hidden", hidden, {sizes.hidden});
  if (dh_n) s.expect_state("dh_n", *dh_n, H);

  Array<Scalar> dx = new_array<Scalar>(s.seq_shape(s.dims.input));
  Array<Scalar> dh0 = new_array<Scalar>({K, s.dims.batch, H});
  py::list dw_ih_out, dw_hh_out, db_ih_out, db_hh_out;
  std::vector<lstm_ext::GruWeightGrads<Scalar>> grads(static_cast<size_t>(K));
  for (Index k = 0; k < K; ++k) {
    Array<Scalar> dw_ih = new_array<Scalar>({G, s.width(k)}), dw_hh = new_array<Scalar>({G, H});
    grads[k] = {dw_ih.mutable_data(), dw_hh.mutable_data(), nullptr, nullptr};
    if (b_ih) {
      Array<Scalar> db_ih = new_array<Scalar>({G}), db_hh = new_array<Scalar>({G});
      grads[k].db_ih = db_ih.mutable_data();
      grads[k].db_hh = db_hh.mutable_data();
      db_ih_out.append(db_ih);
      db_hh_out.append(db_hh);
    }
    dw_ih_out.append(dw_ih);
    dw_hh_out.append(dw_hh);
  }
  const lstm_ext::GruStackCache<Scalar> cache{const_cast<Scalar*>(gates.data()),
                                              reset_after ? const_cast<Scalar*>(hidden_n.data()) : nullptr,
                                              layers > 1 ? const_cast<Scalar*>(hidden.data()) : nullptr};
  Scalar* dx_ptr = dx.mutable_data();
  Scalar* dh0_ptr = dh0.mutable_data();
  {
    py::gil_scoped_release release;
    lstm_ext::gru_stack_backward<Scalar>(s.dims, a.weights.data(), x.data(), data_or_null(h0), y.data(), cache,
                                         dy.data(), data_or_null(dh_n), dx_ptr, dh0_ptr, grads.data(), a.dropout);
  }
  return py::make_tuple(dx, dh0, dw_ih_out, dw_hh_out, b_ih ? py::object(db_ih_out) : py::none(),
                        b_ih ? py::object(db_hh_out) : py::none());
}

// Arguments every stack call shares, after the weights and states.
py::arg opt(const char* name) { return py::arg(name).noconvert().none(true); }

// ----------------------------------------------------------------------------------------------------------
// Cells: one step of N rows (cell.h), called once per step from Python, so the per-call cost decides at the
// sizes cells are used at. Every argument is positional and taken as a plain py::array (or None), then checked
// here: array_t's caster would run PyArray_FromAny on each argument, even with noconvert, which costs about as
// much as a whole small step; and one entry point per function dispatching on x's dtype avoids pybind11's
// overload resolution. Nothing is converted; the outputs are the only allocations. x is [N, I] or unbatched
// [I]; the states and their gradients have x's rank with H columns.

constexpr char kSwappedByteOrder = __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ ? '>' : '<';

template <typename Scalar>
const char* scalar_name() {
  return std::is_same_v<Scalar, float> ? "float32" : "float64";
}

// `a` itself, once checked to be a C-contiguous, aligned array of Scalar in native byte order.
template <typename Scalar>
const py::array& exact(const char* name, const py::array& a) {
  const py::dtype dt = a.dtype();
  if (dt.num() != py::detail::npy_format_descriptor<Scalar>::value || dt.byteorder() == kSwappedByteOrder ||
      !(a.flags() & py::array::c_style))
    throw py::type_error(std::string(name) + ": expected a C-contiguous " + scalar_name<Scalar>() +
                         " array in native byte order");
  expect_aligned(name, a);
  return a;
}

// An optional argument: None, or an array checked as `exact` does.
template <typename Scalar>
std::optional<py::array> exact_or_none(const char* name, const py::object& o) {
  if (o.is_none()) return std::nullopt;
  if (!py::isinstance<py::array>(o)) throw py::type_error(std::string(name) + ": expected an array or None");
  return exact<Scalar>(name, py::reinterpret_borrow<py::array>(o));
}

template <typename Scalar>
const Scalar* data_of(const py::array& a) {
  return static_cast<const Scalar*>(a.data());
}

template <typename Scalar>
const Scalar* data_of(const std::optional<py::array>& a) {
  return a ? data_of<Scalar>(*a) : nullptr;
}

// Writeable data of an output argument (mutable_data throws for a read-only array).
template <typename Scalar>
Scalar* mutable_data_of(py::array& a) {
  return static_cast<Scalar*>(a.mutable_data());
}

template <typename Scalar>
Scalar* mutable_data_of(std::optional<py::array>& a) {
  return a ? mutable_data_of<Scalar>(*a) : nullptr;
}

// Whether a cell call computes in float64: x's (or dh1's) dtype picks the instantiation; every other array is
// then checked against it.
bool is_double(const py::array& a) {
  return a.dtype().num() == py::detail::npy_format_descriptor<double>::value;
}

// A state-shaped array: [N, H], or [H] for an unbatched x.
void expect_cell_state(const char* name, const py::array& a, const lstm_ext::CellDims& d, bool unbatched) {
  if (unbatched) expect_shape(name, a, {d.hidden});
  else expect_shape(name, a, {d.batch, d.hidden});
}

// The weights of a cell call and its dims, from N and I (x's, or in the backward dh1's and w_ih's), checked.
template <typename Scalar>
struct CellArgs {
  lstm_ext::CellDims dims;
  lstm_ext::CellWeights<Scalar> weights;
};

template <typename Scalar>
CellArgs<Scalar> cell_args(Index batch, Index input, const py::array& w_ih, const py::array& w_hh,
                           const py::object& b_ih_obj, const py::object& b_hh_obj, Index gates) {
  exact<Scalar>("w_ih", w_ih);
  exact<Scalar>("w_hh", w_hh);
  const std::optional<py::array> b_ih = exact_or_none<Scalar>("b_ih", b_ih_obj);
  const std::optional<py::array> b_hh = exact_or_none<Scalar>("b_hh", b_hh_obj);
  expect_rank("w_hh", w_hh, 2);
  const lstm_ext::CellDims d{batch, input, w_hh.shape(1)};
  const Index G = gates * d.hidden;
  expect_shape("w_ih", w_ih, {G, d.input});
  expect_shape("w_hh", w_hh, {G, d.hidden});
  if (b_ih.has_value() != b_hh.has_value()) throw std::invalid_argument("b_ih and b_hh: give both or neither");
  if (b_ih) expect_shape("b_ih", *b_ih, {G});
  if (b_hh) expect_shape("b_hh", *b_hh, {G});
  // The pointers outlive the optionals: the arrays are the caller's arguments.
  return {d, {data_of<Scalar>(w_ih), data_of<Scalar>(w_hh), data_of<Scalar>(b_ih), data_of<Scalar>(b_hh)}};
}

// The args of a forward, from x [N, I] or unbatched [I].
template <typename Scalar>
CellArgs<Scalar> forward_args(const py::array& x, const py::array& w_ih, const py::array& w_hh,
                              const py::object& b_ih, const py::object& b_hh, Index gates) {
  exact<Scalar>("x", x);
  if (x.ndim() != 1 && x.ndim() != 2)
    throw std::invalid_argument("x: expected shape (N, I) or (I,), got " + shape_string(x));
  return cell_args<Scalar>(x.ndim() == 2 ? x.shape(0) : 1, x.shape(x.ndim() - 1), w_ih, w_hh, b_ih, b_hh, gates);
}

// The args of a backward, from dh1 [N, H] or unbatched [H] and w_ih [G, I].
template <typename Scalar>
CellArgs<Scalar> backward_args(const py::array& dh1, const py::array& w_ih, const py::array& w_hh,
                               const py::object& b_ih, const py::object& b_hh, Index gates) {
  exact<Scalar>("dh1", dh1);
  if (dh1.ndim() != 1 && dh1.ndim() != 2)
    throw std::invalid_argument("dh1: expected shape (N, H) or (H,), got " + shape_string(dh1));
  expect_rank("w_ih", w_ih, 2);
  const CellArgs<Scalar> a =
      cell_args<Scalar>(dh1.ndim() == 2 ? dh1.shape(0) : 1, w_ih.shape(1), w_ih, w_hh, b_ih, b_hh, gates);
  expect_cell_state("dh1", dh1, a.dims, dh1.ndim() == 1);
  return a;
}

template <typename Scalar>
Array<Scalar> new_cell_array(const lstm_ext::CellDims& d, bool unbatched, Index width) {
  if (unbatched) return Array<Scalar>({width});
  return Array<Scalar>({d.batch, width});
}

// The tape of a training step: one array of N * (kept + the widths) values: first the `kept` columns the
// forward writes (the gates; the GRU's hidden_n), then copies of x and the states, so that the caller changing
// its arrays later does not change the backward.
template <typename Scalar>
Array<Scalar> new_tape(const lstm_ext::CellDims& d, Index kept, std::initializer_list<const Scalar*> copies,
                       std::initializer_list<Index> widths) {
  Index total = kept;
  for (Index w : widths) total += w;
  Array<Scalar> tape({lstm_ext::checked_product("tape", {d.batch, total})});
  Scalar* at = tape.mutable_data() + d.batch * kept;
  auto width = widths.begin();
  for (const Scalar* src : copies) {
    std::copy_n(src, d.batch * *width, at);
    at += d.batch * *width++;
  }
  return tape;
}

// The arrays the backward writes the weight gradients into (the layer's live gradients), checked.
template <typename Scalar>
lstm_ext::CellGrads<Scalar> cell_grads(const CellArgs<Scalar>& a, Index gates, py::array& dw_ih, py::array& dw_hh,
                                       const py::object& db_ih_obj, const py::object& db_hh_obj) {
  const Index G = gates * a.dims.hidden;
  exact<Scalar>("dw_ih", dw_ih);
  exact<Scalar>("dw_hh", dw_hh);
  std::optional<py::array> db_ih = exact_or_none<Scalar>("db_ih", db_ih_obj);
  std::optional<py::array> db_hh = exact_or_none<Scalar>("db_hh", db_hh_obj);
  expect_shape("dw_ih", dw_ih, {G, a.dims.input});
  expect_shape("dw_hh", dw_hh, {G, a.dims.hidden});
  const bool has_bias = a.weights.b_ih != nullptr;
  if (db_ih.has_value() != has_bias || db_hh.has_value() != has_bias)
    throw std::invalid_argument("db_ih and db_hh: give both exactly when the cell has biases");
  if (db_ih) expect_shape("db_ih", *db_ih, {G});
  if (db_hh) expect_shape("db_hh", *db_hh, {G});
  return {mutable_data_of<Scalar>(dw_ih), mutable_data_of<Scalar>(dw_hh), mutable_data_of<Scalar>(db_ih),
          mutable_data_of<Scalar>(db_hh)};
}

template <typename Scalar>
py::tuple lstm_cell_forward(const py::array& x, const py::array& h0, const py::array& c0, const py::array& w_ih,
                            const py::array& w_hh, const py::object& b_ih, const py::object& b_hh, bool training) {
  const CellArgs<Scalar> a = forward_args<Scalar>(x, w_ih, w_hh, b_ih, b_hh, lstm_ext::kGatesLstm);
  const lstm_ext::CellDims& d = a.dims;
  const bool unbatched = x.ndim() == 1;
  expect_cell_state("h0", exact<Scalar>("h0", h0), d, unbatched);
  expect_cell_state("c0", exact<Scalar>("c0", c0), d, unbatched);
  const Index H = d.hidden, G = lstm_ext::kGatesLstm * H;
  const Scalar *x_p = data_of<Scalar>(x), *h0_p = data_of<Scalar>(h0), *c0_p = data_of<Scalar>(c0);
  Array<Scalar> h1 = new_cell_array<Scalar>(d, unbatched, H), c1 = new_cell_array<Scalar>(d, unbatched, H);
  Scalar* gates = nullptr;
  py::object tape = py::none();
  if (training) {
    Array<Scalar> t = new_tape<Scalar>(d, G, {x_p, h0_p, c0_p}, {d.input, H, H});
    gates = t.mutable_data();
    tape = std::move(t);
  }
  {
    py::gil_scoped_release release;  // a step is microseconds: releasing costs ~0.1 us of it
    lstm_ext::lstm_cell_forward<Scalar>(d, a.weights, x_p, h0_p, c0_p, h1.mutable_data(), c1.mutable_data(), gates);
  }
  return py::make_tuple(h1, c1, tape);
}

template <typename Scalar>
py::tuple lstm_cell_backward(const py::array& tape, const py::array& w_ih, const py::array& w_hh,
                             const py::object& b_ih, const py::object& b_hh, const py::array& dh1,
                             const py::object& dc1_obj, py::array& dw_ih, py::array& dw_hh, const py::object& db_ih,
                             const py::object& db_hh, bool accumulate) {
  const CellArgs<Scalar> a = backward_args<Scalar>(dh1, w_ih, w_hh, b_ih, b_hh, lstm_ext::kGatesLstm);
  const lstm_ext::CellDims& d = a.dims;
  const bool unbatched = dh1.ndim() == 1;
  const Index N = d.batch, I = d.input, H = d.hidden, G = lstm_ext::kGatesLstm * H;
  const std::optional<py::array> dc1 = exact_or_none<Scalar>("dc1", dc1_obj);
  if (dc1) expect_cell_state("dc1", *dc1, d, unbatched);
  expect_shape("tape", exact<Scalar>("tape", tape), {N * (G + I + 2 * H)});
  const lstm_ext::CellGrads<Scalar> grads = cell_grads(a, lstm_ext::kGatesLstm, dw_ih, dw_hh, db_ih, db_hh);
  const Scalar* gates = data_of<Scalar>(tape);
  const Scalar* x = gates + N * G;
  const Scalar* h0 = x + N * I;
  const Scalar* c0 = h0 + N * H;
  Array<Scalar> dx = new_cell_array<Scalar>(d, unbatched, I);
  Array<Scalar> dh0 = new_cell_array<Scalar>(d, unbatched, H), dc0 = new_cell_array<Scalar>(d, unbatched, H);
  {
    py::gil_scoped_release release;  // a step is microseconds: releasing costs ~0.1 us of it
    lstm_ext::lstm_cell_backward<Scalar>(d, a.weights, x, h0, c0, gates, data_of<Scalar>(dh1), data_of<Scalar>(dc1),
                                         dx.mutable_data(), dh0.mutable_data(), dc0.mutable_data(), grads, accumulate);
  }
  return py::make_tuple(dx, dh0, dc0);
}

template <typename Scalar>
py::tuple gru_cell_forward(const py::array& x, const py::array& h0, const py::array& w_ih, const py::array& w_hh,
                           const py::object& b_ih, const py::object& b_hh, bool training) {
  const CellArgs<Scalar> a = forward_args<Scalar>(x, w_ih, w_hh, b_ih, b_hh, lstm_ext::kGatesGru);
  const lstm_ext::CellDims& d = a.dims;
  const bool unbatched = x.ndim() == 1;
  expect_cell_state("h0", exact<Scalar>("h0", h0), d, unbatched);
  const Index H = d.hidden, G = lstm_ext::kGatesGru * H;
  const Scalar *x_p = data_of<Scalar>(x), *h0_p = data_of<Scalar>(h0);
  Array<Scalar> h1 = new_cell_array<Scalar>(d, unbatched, H);
  Scalar *gates = nullptr, *hidden_n = nullptr;
  py::object tape = py::none();
  if (training) {
    Array<Scalar> t = new_tape<Scalar>(d, G + H, {x_p, h0_p}, {d.input, H});
    gates = t.mutable_data();
    hidden_n = gates + d.batch * G;
    tape = std::move(t);
  }
  {
    py::gil_scoped_release release;  // a step is microseconds: releasing costs ~0.1 us of it
    lstm_ext::gru_cell_forward<Scalar>(d, a.weights, x_p, h0_p, h1.mutable_data(), gates, hidden_n);
  }
  return py::make_tuple(h1, tape);
}

template <typename Scalar>
py::tuple gru_cell_backward(const py::array& tape, const py::array& w_ih, const py::array& w_hh,
                            const py::object& b_ih, const py::object& b_hh, const py::array& dh1, py::array& dw_ih,
                            py::array& dw_hh, const py::object& db_ih, const py::object& db_hh, bool accumulate) {
  const CellArgs<Scalar> a = backward_args<Scalar>(dh1, w_ih, w_hh, b_ih, b_hh, lstm_ext::kGatesGru);
  const lstm_ext::CellDims& d = a.dims;
  const bool unbatched = dh1.ndim() == 1;
  const Index N = d.batch, I = d.input, H = d.hidden, G = lstm_ext::kGatesGru * H;
  expect_shape("tape", exact<Scalar>("tape", tape), {N * (G + H + I + H)});
  const lstm_ext::CellGrads<Scalar> grads = cell_grads(a, lstm_ext::kGatesGru, dw_ih, dw_hh, db_ih, db_hh);
  const Scalar* gates = data_of<Scalar>(tape);
  const Scalar* hidden_n = gates + N * G;
  const Scalar* x = hidden_n + N * H;
  const Scalar* h0 = x + N * I;
  Array<Scalar> dx = new_cell_array<Scalar>(d, unbatched, I);
  Array<Scalar> dh0 = new_cell_array<Scalar>(d, unbatched, H);
  {
    py::gil_scoped_release release;  // a step is microseconds: releasing costs ~0.1 us of it
    lstm_ext::gru_cell_backward<Scalar>(d, a.weights, x, h0, gates, hidden_n, data_of<Scalar>(dh1), dx.mutable_data(),
                                        dh0.mutable_data(), grads, accumulate);
  }
  return py::make_tuple(dx, dh0);
}

void def_cells(py::module_& m) {
  m.def(
      "lstm_cell_forward",
      [](const py::array& x, const py::array& h0, const py::array& c0, const py::array& w_ih, const py::array& w_hh,
         const py::object& b_ih, const py::object& b_hh, bool training) {
        return is_double(x) ? lstm_cell_forward<double>(x, h0, c0, w_ih, w_hh, b_ih, b_hh, training)
                            : lstm_cell_forward<float>(x, h0, c0, w_ih, w_hh, b_ih, b_hh, training);
      },
      py::arg("x"), py::arg("h0"), py::arg("c0"), py::arg("w_ih"), py::arg("w_hh"), py::arg("b_ih").none(true),
      py::arg("b_hh").none(true), py::arg("training"),
      "One LSTM cell step: x [N, I] or [I], h0 and c0 [N, H] or [H] (required: pass zeros), the four weights "
      "(biases both or None), all C-contiguous float32 or all float64. Returns (h1, c1, tape); tape "
      "[N*(4H + I + 2H)] = gates, x, h0, c0 when training, else None.");
  m.def(
      "lstm_cell_backward",
      [](const py::array& tape, const py::array& w_ih, const py::array& w_hh, const py::object& b_ih,
         const py::object& b_hh, const py::array& dh1, const py::object& dc1, py::array& dw_ih, py::array& dw_hh,
         const py::object& db_ih, const py::object& db_hh, bool accumulate) {
        return is_double(dh1)
                   ? lstm_cell_backward<double>(tape, w_ih, w_hh, b_ih, b_hh, dh1, dc1, dw_ih, dw_hh, db_ih, db_hh, accumulate)
                   : lstm_cell_backward<float>(tape, w_ih, w_hh, b_ih, b_hh, dh1, dc1, dw_ih, dw_hh, db_ih, db_hh, accumulate);
      },
      py::arg("tape"), py::arg("w_ih"), py::arg("w_hh"), py::arg("b_ih").none(true), py::arg("b_hh").none(true),
      py::arg("dh1"), py::arg("dc1").none(true), py::arg("dw_ih"), py::arg("dw_hh"), py::arg("db_ih").none(true),
      py::arg("db_hh").none(true), py::arg("accumulate"),
      "Backward of lstm_cell_forward (same weights, dc1 None: zeros): writes (accumulate: adds) the weight "
      "gradients into dw_ih, dw_hh, db_ih, db_hh. Returns (dx, dh0, dc0), shaped as x and h0.");
  m.def(
      "gru_cell_forward",
      [](const py::array& x, const py::array& h0, const py::array& w_ih, const py::array& w_hh,
         const py::object& b_ih, const py::object& b_hh, bool training) {
        return is_double(x) ? gru_cell_forward<double>(x, h0, w_ih, w_hh, b_ih, b_hh, training)
                            : gru_cell_forward<float>(x, h0, w_ih, w_hh, b_ih, b_hh, training);
      },
      py::arg("x"), py::arg("h0"), py::arg("w_ih"), py::arg("w_hh"), py::arg("b_ih").none(true),
      py::arg("b_hh").none(true), py::arg("training"),
      "One GRU cell step (torch's, reset after the product): x [N, I] or [I], h0 [N, H] or [H]. Returns (h1, "
      "tape); tape [N*(3H + H + I + H)] = gates, hidden_n, x, h0 when training, else None.");
  m.def(
      "gru_cell_backward",
      [](const py::array& tape, const py::array& w_ih, const py::array& w_hh, const py::object& b_ih,
         const py::object& b_hh, const py::array& dh1, py::array& dw_ih, py::array& dw_hh, const py::object& db_ih,
         const py::object& db_hh, bool accumulate) {
        return is_double(dh1)
                   ? gru_cell_backward<double>(tape, w_ih, w_hh, b_ih, b_hh, dh1, dw_ih, dw_hh, db_ih, db_hh, accumulate)
                   : gru_cell_backward<float>(tape, w_ih, w_hh, b_ih, b_hh, dh1, dw_ih, dw_hh, db_ih, db_hh, accumulate);
      },
      py::arg("tape"), py::arg("w_ih"), py::arg("w_hh"), py::arg("b_ih").none(true), py::arg("b_hh").none(true),
      py::arg("dh1"), py::arg("dw_ih"), py::arg("dw_hh"), py::arg("db_ih").none(true), py::arg("db_hh").none(true),
      py::arg("accumulate"), "Backward of gru_cell_forward, as lstm_cell_backward. Returns (dx, dh0).");
}

template <typename Scalar>
void def_stacks(py::module_& m) {
  m.def("copy_array", &copy_array<Scalar>, py::arg("a").noconvert(),
        "A copy of a C-contiguous array, its data from the memory cache when large.");
  m.def("lstm_stack_forward", &lstm_stack_forward<Scalar>, py::arg("x").noconvert(), py::arg("w_ih").noconvert(),
        py::arg("w_hh").noconvert(), opt("bias"), opt("w_hr"), opt("h0"), opt("c0"), py::kw_only(),
        py::arg("layers"), py::arg("directions"), py::arg("reverse") = false, py::arg("training"),
        opt("batch_sizes") = py::none(), opt("input_masks") = py::none(), opt("recurrent_masks") = py::none(),
        opt("inter_masks") = py::none(),
        "Stacked/bidirectional LSTM forward: x [T, N, I] (or packed [R, I] with batch_sizes [T]); per (layer, "
        "direction) k = l*D + d lists of w_ih, w_hh, bias (b_ih + b_hh; None: no bias) and w_hr (None: no "
        "projection); h0 [L*D, N, H_out], c0 [L*D, N, H] or None. Returns (y, h_n, c_n, cache); cache = (gates, "
        "cells, hidden) flat buffers when training, else None.");
  m.def("lstm_stack_backward", &lstm_stack_backward<Scalar>, py::arg("x").noconvert(), py::arg("w_ih").noconvert(),
        py::arg("w_hh").noconvert(), opt("bias"), opt("w_hr"), opt("h0"), opt("c0"), py::kw_only(),
        py::arg("layers"), py::arg("directions"), py::arg("reverse") = false, opt("batch_sizes") = py::none(),
        opt("input_masks") = py::none(), opt("recurrent_masks") = py::none(), opt("inter_masks") = py::none(),
        py::arg("y").noconvert(), py::arg("gates").noconvert(), py::arg("cells").noconvert(),
        py::arg("hidden").noconvert(), py::arg("dy").noconvert(), opt("dh_n") = py::none(), opt("dc_n") = py::none(),
        "Backward of lstm_stack_forward. Returns (dx, dh0, dc0, [dw_ih], [dw_hh], [dbias] or None, [dw_hr] or None).");
  m.def("gru_stack_forward", &gru_stack_forward<Scalar>, py::arg("x").noconvert(), py::arg("w_ih").noconvert(),
        py::arg("w_hh").noconvert(), opt("b_ih"), opt("b_hh"), opt("h0"), py::kw_only(), py::arg("layers"),
        py::arg("directions"), py::arg("reverse") = false, py::arg("reset_after") = true, py::arg("training"),
        opt("batch_sizes") = py::none(), opt("input_masks") = py::none(), opt("recurrent_masks") = py::none(),
        opt("inter_masks") = py::none(),
        "Stacked/bidirectional GRU forward, arguments as lstm_stack_forward with torch's two biases. Returns (y, "
        "h_n, cache); cache = (gates, hidden_n, hidden) when training, else None.");
  m.def("gru_stack_backward", &gru_stack_backward<Scalar>, py::arg("x").noconvert(), py::arg("w_ih").noconvert(),
        py::arg("w_hh").noconvert(), opt("b_ih"), opt("b_hh"), opt("h0"), py::kw_only(), py::arg("layers"),
        py::arg("directions"), py::arg("reverse") = false, py::arg("reset_after") = true,
        opt("batch_sizes") = py::none(), opt("input_masks") = py::none(), opt("recurrent_masks") = py::none(),
        opt("inter_masks") = py::none(), py::arg("y").noconvert(), py::arg("gates").noconvert(),
        py::arg("hidden_n").noconvert(), py::arg("hidden").noconvert(), py::arg("dy").noconvert(),
        opt("dh_n") = py::none(),
        "Backward of gru_stack_forward. Returns (dx, dh0, [dw_ih], [dw_hh], [db_ih] or None, [db_hh] or None).");
}

// The backends by their Python names.
lstm_ext::GemmBackend backend_from_name(const std::string& name) {
  if (name == "native") return lstm_ext::GemmBackend::kNative;
  if (name == "eigen") return lstm_ext::GemmBackend::kEigen;
  if (name == "openblas") {
    if (!lstm_ext::openblas_available())
      throw py::value_error("name: 'openblas' is not available in this build (built without scipy-openblas32)");
    return lstm_ext::GemmBackend::kOpenBlas;
  }
  throw py::value_error("name: expected 'native', 'openblas' or 'eigen', got '" + name + "'");
}

std::string backend_name(lstm_ext::GemmBackend backend) {
  switch (backend) {
    case lstm_ext::GemmBackend::kNative: return "native";
    case lstm_ext::GemmBackend::kOpenBlas: return "openblas";
    default: return "eigen";
  }
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "lstm_ext's compiled core (private): use the lstm_ext package instead.";
  def_stacks<float>(m);
  def_stacks<double>(m);
  def_cells(m);
  m.def("set_num_threads", &lstm_ext::set_num_threads, py::arg("n"),
        "Threads used by the kernels, process-wide (n >= 1).");
  m.def("get_num_threads", &lstm_ext::get_num_threads, "Threads used by the kernels.");
  m.def("default_num_threads", &lstm_ext::default_num_threads,
        "CPUs this process may run on: the default thread count.");
  m.def("set_memory_cache_limit", &lstm_ext::set_block_cache_limit, py::arg("nbytes"),
        "The most bytes of freed large buffers kept for reuse (0: none).");
  m.def("get_memory_cache_limit", &lstm_ext::get_block_cache_limit, "The memory cache's limit in bytes.");
  m.def("memory_cache_bytes", &lstm_ext::block_cache_bytes, "Bytes of freed buffers the memory cache holds.");
  m.def("empty_memory_cache", &lstm_ext::empty_block_cache, "Returns the cached buffers to the system.");
  m.def("gemm_backends", [] {
    std::vector<std::string> names{"native"};
    if (lstm_ext::openblas_available()) names.push_back("openblas");
    names.push_back("eigen");
    return names;
  }, "The available backends of the products over all steps, the default first.");
  m.def("set_gemm_backend", [](const std::string& name) { lstm_ext::set_gemm_backend(backend_from_name(name)); },
        py::arg("name"), "Backend of the products over all steps, process-wide.");
  m.def("get_gemm_backend", [] { return backend_name(lstm_ext::get_gemm_backend()); });
  m.def("gemm_backend_description",
        [](const std::string& name) { return lstm_ext::gemm_backend_description(backend_from_name(name)); },
        py::arg("name"));
}
