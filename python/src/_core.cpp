// SPDX-License-Identifier: MIT
// The one binding file: converts NumPy arrays to pointers and dims, checks ranks and sizes, allocates the
// outputs with the GIL held and releases the GIL around the core call. No numerics and no policy here:
// the Python layer (lstm_ext/*.py) validates user input with friendlier messages first; these checks are the
// safety net that keeps a wrong call from reaching the core with inconsistent buffers.
#include <pybind11/pybind11.h>
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include "lstm_ext/lstm.h"
#include "lstm_ext/threads.h"

#include <initializer_list>
#include <optional>
#include <stdexcept>
#include <string>
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

void expect_shape(const char* name, const py::array& a, std::initializer_list<Index> dims) {
  bool ok = a.ndim() == static_cast<py::ssize_t>(dims.size());
  py::ssize_t k = 0;
  for (Index d : dims) ok = ok && a.shape(k++) == d;
  if (!ok) {
    throw std::invalid_argument(std::string(name) + ": expected shape " + shape_string(dims) + ", got " +
                                shape_string(a));
  }
}

void expect_rank(const char* name, const py::array& a, py::ssize_t rank) {
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

// Stack dims from x and the per-(layer, direction) weights; checks every weight against them.
template <typename Scalar>
lstm_ext::LstmStackDims stack_dims(const Array<Scalar>& x, const ArrayList<Scalar>& w_ih,
                                   const ArrayList<Scalar>& w_hh, const std::optional<ArrayList<Scalar>>& bias,
                                   Index layers, Index directions) {
  expect_rank("x", x, 3);
  if (layers < 1 || (directions != 1 && directions != 2))
    throw std::invalid_argument("layers must be >= 1 and directions 1 or 2");
  const size_t count = static_cast<size_t>(layers * directions);
  if (w_ih.size() != count || w_hh.size() != count || (bias && bias->size() != count))
    throw std::invalid_argument("expected " + std::to_string(count) + " weight arrays of each kind");
  expect_rank("w_hh[0]", w_hh[0], 2);
  const Index H = w_hh[0].shape(1);
  const lstm_ext::LstmStackDims d{x.shape(0), x.shape(1), x.shape(2), H, layers, directions};
  for (size_t k = 0; k < count; ++k) {
    const std::string at = "[" + std::to_string(k) + "]";
    const Index in = k < static_cast<size_t>(directions) ? d.input : directions * H;
    expect_shape(("w_ih" + at).c_str(), w_ih[k], {lstm_ext::kGatesLstm * H, in});
    expect_shape(("w_hh" + at).c_str(), w_hh[k], {lstm_ext::kGatesLstm * H, H});
    if (bias) expect_shape(("bias" + at).c_str(), (*bias)[k], {lstm_ext::kGatesLstm * H});
  }
  return d;
}

template <typename Scalar>
std::vector<lstm_ext::LstmWeights<Scalar>> stack_weights(const ArrayList<Scalar>& w_ih, const ArrayList<Scalar>& w_hh,
                                                         const std::optional<ArrayList<Scalar>>& bias) {
  std::vector<lstm_ext::LstmWeights<Scalar>> weights(w_ih.size());
  for (size_t k = 0; k < w_ih.size(); ++k)
    weights[k] = {w_ih[k].data(), w_hh[k].data(), bias ? (*bias)[k].data() : nullptr};
  return weights;
}

template <typename Scalar>
void expect_stack_state(const char* name, const OptArray<Scalar>& a, const lstm_ext::LstmStackDims& d) {
  if (a) expect_shape(name, *a, {d.layers * d.directions, d.batch, d.hidden});
}

template <typename Scalar>
py::tuple lstm_stack_forward(const Array<Scalar>& x, const ArrayList<Scalar>& w_ih, const ArrayList<Scalar>& w_hh,
                             const std::optional<ArrayList<Scalar>>& bias, const OptArray<Scalar>& h0,
                             const OptArray<Scalar>& c0, Index layers, Index directions, bool training) {
  const lstm_ext::LstmStackDims d = stack_dims(x, w_ih, w_hh, bias, layers, directions);
  expect_stack_state("h0", h0, d);
  expect_stack_state("c0", c0, d);
  const Index K = layers * directions;
  Array<Scalar> y({d.steps, d.batch, directions * d.hidden});
  Array<Scalar> h_n({K, d.batch, d.hidden});
  Array<Scalar> c_n({K, d.batch, d.hidden});
  py::object cache_out = py::none();
  lstm_ext::LstmStackCache<Scalar> cache;
  if (training) {
    const lstm_ext::LstmStackCacheSizes sizes = lstm_ext::lstm_stack_cache_sizes(d);
    Array<Scalar> gates({sizes.gates}), cells({sizes.cells}), hidden({sizes.hidden});
    cache = {gates.mutable_data(), cells.mutable_data(), layers > 1 ? hidden.mutable_data() : nullptr};
    cache_out = py::make_tuple(gates, cells, hidden);
  }
  const auto weights = stack_weights(w_ih, w_hh, bias);
  Scalar* y_ptr = y.mutable_data();
  Scalar* h_n_ptr = h_n.mutable_data();
  Scalar* c_n_ptr = c_n.mutable_data();
  {
    py::gil_scoped_release release;
    lstm_ext::lstm_stack_forward<Scalar>(d, weights.data(), x.data(), data_or_null(h0), data_or_null(c0), y_ptr,
                                         h_n_ptr, c_n_ptr, cache);
  }
  return py::make_tuple(y, h_n, c_n, cache_out);
}

template <typename Scalar>
py::tuple lstm_stack_backward(const Array<Scalar>& x, const ArrayList<Scalar>& w_ih, const ArrayList<Scalar>& w_hh,
                              const std::optional<ArrayList<Scalar>>& bias, const OptArray<Scalar>& h0,
                              const OptArray<Scalar>& c0, Index layers, Index directions, const Array<Scalar>& y,
                              const Array<Scalar>& gates, const Array<Scalar>& cells, const Array<Scalar>& hidden,
                              const Array<Scalar>& dy, const OptArray<Scalar>& dh_n, const OptArray<Scalar>& dc_n) {
  const lstm_ext::LstmStackDims d = stack_dims(x, w_ih, w_hh, bias, layers, directions);
  const lstm_ext::LstmStackCacheSizes sizes = lstm_ext::lstm_stack_cache_sizes(d);
  const Index K = layers * directions, G = lstm_ext::kGatesLstm * d.hidden;
  expect_stack_state("h0", h0, d);
  expect_stack_state("c0", c0, d);
  expect_shape("y", y, {d.steps, d.batch, directions * d.hidden});
  expect_shape("dy", dy, {d.steps, d.batch, directions * d.hidden});
  expect_shape("gates", gates, {sizes.gates});
  expect_shape("cells", cells, {sizes.cells});
  expect_shape("hidden", hidden, {sizes.hidden});
  expect_stack_state("dh_n", dh_n, d);
  expect_stack_state("dc_n", dc_n, d);

  Array<Scalar> dx({d.steps, d.batch, d.input});
  Array<Scalar> dh0({K, d.batch, d.hidden});
  Array<Scalar> dc0({K, d.batch, d.hidden});
  py::list dw_ih_out, dw_hh_out, dbias_out;
  std::vector<lstm_ext::LstmWeightGrads<Scalar>> grads(static_cast<size_t>(K));
  for (Index k = 0; k < K; ++k) {
    Array<Scalar> dw_ih({G, static_cast<Index>(w_ih[k].shape(1))}), dw_hh({G, d.hidden});
    grads[k] = {dw_ih.mutable_data(), dw_hh.mutable_data(), nullptr};
    if (bias) {
      Array<Scalar> dbias({G});
      grads[k].dbias = dbias.mutable_data();
      dbias_out.append(dbias);
    }
    dw_ih_out.append(dw_ih);
    dw_hh_out.append(dw_hh);
  }
  // The cache is only read; the core's struct is shared with the forward, hence the const_cast.
  const lstm_ext::LstmStackCache<Scalar> cache{const_cast<Scalar*>(gates.data()), const_cast<Scalar*>(cells.data()),
                                               layers > 1 ? const_cast<Scalar*>(hidden.data()) : nullptr};
  const auto weights = stack_weights(w_ih, w_hh, bias);
  Scalar* dx_ptr = dx.mutable_data();
  Scalar* dh0_ptr = dh0.mutable_data();
  Scalar* dc0_ptr = dc0.mutable_data();
  {
    py::gil_scoped_release release;
    lstm_ext::lstm_stack_backward<Scalar>(d, weights.data(), x.data(), data_or_null(h0), data_or_null(c0), y.data(),
                                          cache, dy.data(), data_or_null(dh_n), data_or_null(dc_n), dx_ptr, dh0_ptr,
                                          dc0_ptr, grads.data());
  }
  return py::make_tuple(dx, dh0, dc0, dw_ih_out, dw_hh_out, bias ? py::object(dbias_out) : py::none());
}

template <typename Scalar>
void def_lstm(py::module_& m) {
  m.def("lstm_stack_forward", &lstm_stack_forward<Scalar>, py::arg("x").noconvert(), py::arg("w_ih").noconvert(),
        py::arg("w_hh").noconvert(), py::arg("bias").noconvert().none(true), py::arg("h0").noconvert().none(true),
        py::arg("c0").noconvert().none(true), py::arg("layers"), py::arg("directions"), py::arg("training"),
        "Stacked/bidirectional LSTM forward: x [T, N, I]; per (layer, direction) k = l*D + d lists of w_ih, "
        "w_hh and bias (b_ih + b_hh; None for no bias); h0/c0 [L*D, N, H] or None. Returns (y [T, N, D*H], "
        "h_n, c_n, cache); cache = (gates, cells, hidden) flat buffers when training, else None.");
  m.def("lstm_stack_backward", &lstm_stack_backward<Scalar>, py::arg("x").noconvert(), py::arg("w_ih").noconvert(),
        py::arg("w_hh").noconvert(), py::arg("bias").noconvert().none(true), py::arg("h0").noconvert().none(true),
        py::arg("c0").noconvert().none(true), py::arg("layers"), py::arg("directions"), py::arg("y").noconvert(),
        py::arg("gates").noconvert(), py::arg("cells").noconvert(), py::arg("hidden").noconvert(),
        py::arg("dy").noconvert(), py::arg("dh_n").noconvert().none(true), py::arg("dc_n").noconvert().none(true),
        "Backward of lstm_stack_forward. Returns (dx, dh0, dc0, [dw_ih], [dw_hh], [dbias] or None).");
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "lstm_ext's compiled core (private): use the lstm_ext package instead.";
  def_lstm<float>(m);
  def_lstm<double>(m);
  m.def("set_num_threads", &lstm_ext::set_num_threads, py::arg("n"),
        "Threads used by the kernels, process-wide (n >= 1).");
  m.def("get_num_threads", &lstm_ext::get_num_threads, "Threads used by the kernels.");
  m.def("default_num_threads", &lstm_ext::default_num_threads,
        "CPUs this process may run on: the default thread count.");
}
