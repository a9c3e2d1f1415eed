// The tensor layer: every backend adapter gives a view onto the same elements,
// without a copy, with the right extents and strides.
#include <Eigen/Core>
#include <span>
#include <vector>
#include <xtensor/xadapt.hpp>
#include <xtensor/xarray.hpp>
#include <xtensor/xtensor.hpp>
#include <xtensor/xview.hpp>

#include "lmrl/tensor.hpp"
#include "lmrl/tensor/eigen.hpp"
#include "lmrl/tensor/xtensor.hpp"
#include "support/testing.hpp"

using namespace lmrl;

static_assert(Array1D<std::vector<float>> && Array1D<std::span<const double>>);
static_assert(Array2D<dense<double, 2>> && Array3D<dense<float, 3>>);
static_assert(Array2D<Eigen::MatrixXf> && Array2D<Eigen::ArrayXXd> && Array1D<Eigen::VectorXd>);
static_assert(Array2D<Eigen::Map<Eigen::MatrixXf>> && Array2D<Eigen::Ref<const Eigen::MatrixXd>>);
static_assert(Array2D<Eigen::Block<Eigen::MatrixXf>>);
static_assert(!Array1D<Eigen::MatrixXf>);  // a matrix is not a vector, even with one column at run time
static_assert(Array2D<xt::xtensor<float, 2>> && Array1D<xt::xtensor<double, 1>> && !Array2D<xt::xtensor<float, 1>>);
static_assert(Array2D<xt::xarray<float>> && Array3D<xt::xtensor<float, 3>>);
static_assert(WritableArray2D<Eigen::MatrixXf> && !WritableArray2D<const Eigen::MatrixXf>);
static_assert(!WritableArray1D<std::span<const float>> && WritableArray1D<std::vector<float>>);
static_assert(!Array2D<std::vector<float>>);

template <class V, class X>
void require_same_elements(const V& v, const X& x) {
  for (index_t i = 0; i < v.shape[0]; ++i)
    for (index_t j = 0; j < v.shape[1]; ++j) CHECK(&v(i, j) == &x(i, j));
}

TEST_CASE("Eigen matrices, blocks and maps are viewed in place, either storage order") {
  Eigen::MatrixXf col(3, 4);
  Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> row(3, 4);
  col.setRandom();
  row.setRandom();
  require_same_elements(view<2>(col), col);
  require_same_elements(view<2>(row), row);
  auto block = col.block(1, 1, 2, 3);
  auto vb = view<2>(block);
  CHECK(vb.shape == std::array<index_t, 2>{2, 3});
  require_same_elements(vb, block);
  auto rblock = row.block(1, 0, 2, 2);
  require_same_elements(view<2>(rblock), rblock);
  Eigen::VectorXd v = Eigen::VectorXd::LinSpaced(5, 0, 4);
  auto v1 = view<1>(v);
  CHECK(v1.shape[0] == 5);
  CHECK(v1(3) == 3.0);
  const Eigen::MatrixXf& cref = col;
  static_assert(std::is_const_v<decltype(view<2>(cref))::element_type>);
}

TEST_CASE("xtensor containers, xarrays and strided views are viewed in place") {
  xt::xtensor<double, 2> x = xt::zeros<double>({3, 5});
  for (std::size_t i = 0; i < 3; ++i)
    for (std::size_t j = 0; j < 5; ++j) x(i, j) = 10.0 * i + j;
  auto v = view<2>(x);
  require_same_elements(v, x);
  auto sub = xt::view(x, xt::range(1, 3), xt::range(1, 4));
  auto vs = view<2>(sub);
  CHECK(vs.shape == std::array<index_t, 2>{2, 3});
  CHECK(vs(1, 2) == 23.0);
  xt::xtensor<float, 2, xt::layout_type::column_major> cm = xt::zeros<float>({2, 3});
  cm(1, 2) = 7;
  CHECK(view<2>(cm)(1, 2) == 7.0f);
  xt::xarray<float> a = xt::zeros<float>({2, 2});
  CHECK_THROWS_AS(view<1>(a), error);  // rank checked at run time
  std::vector<float> storage(6, 1.0f);
  auto adapted = xt::adapt(storage, std::array<std::size_t, 2>{2, 3});
  CHECK(view<2>(adapted).data == storage.data());
}

TEST_CASE("std::vector and std::span are 1-D, make_like returns the caller's family") {
  std::vector<float> v{1, 2, 3};
  CHECK(view<1>(v).data == v.data());
  std::span<const float> s(v);
  CHECK(view<1>(s)(2) == 3.0f);
  auto e = make_like<Eigen::MatrixXf, double, 2>({2, 3});
  static_assert(std::is_same_v<decltype(e), Eigen::MatrixXd>);
  CHECK(e.rows() == 2);
  auto xe = make_like<xt::xtensor<float, 2>, float, 2>({2, 4});
  static_assert(std::is_same_v<decltype(xe), xt::xtensor<float, 2>>);
  CHECK(xe.size() == 8);
  auto sv = make_like<std::vector<float>, double, 1>({4});
  static_assert(std::is_same_v<decltype(sv), std::vector<double>>);
  auto d = make_like<matrix_view<const float>, float, 2>({2, 2});
  static_assert(std::is_same_v<decltype(d), dense<float, 2>>);
}

TEST_CASE("strided views: contiguity, rows, const conversion") {
  dense<float, 2> d({3, 4});
  auto v = d.view();
  CHECK(v.is_contiguous());
  CHECK(v.rows(1, 2).shape[0] == 2);
  CHECK(v.row(2).shape[0] == 4);
  matrix_view<const float> c = v;
  CHECK(c.data == v.data);
  matrix_view<float> transposed(v.data, {4, 3}, {1, 4});
  CHECK(!transposed.is_contiguous());
  using dense2 = dense<float, 2>;
  CHECK_THROWS_AS(dense2({-1, 2}), error);
}
