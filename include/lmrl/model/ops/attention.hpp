// Causal scaled-dot-product attention with grouped-query heads (GQA), forward
// and backward, as Qwen2/Llama compute it:
//
//   S = scale * Q_h K_g^T,  scale = 1/sqrt(head_dim),  g = h / (heads / kv_heads)  (repeat_kv)
//   P = softmax(S) over the keys a query may see,  O_h = P V_g.
//
// Query i (0-based within its block) sees key j iff j < i + causal_offset and
// key_mask[j] != 0 and, when a query_mask is given, key_mask[j] == query_mask[i].
// With queries and keys being the same padded sequence, causal_offset = 1 and
// query_mask = key_mask = attention_mask gives the training case (padding,
// left or right, is never attended). A mask may also number the sequences
// packed into one row (1, 1, 1, 2, 2, 0: two sequences and a pad): a token
// then attends only within its own sequence (SFT packing). A block of nq new queries
// at cache positions [p0, p0 + nq) against a KV cache of nk >= p0 + nq keys is
// causal_offset = p0 + 1. A masked query row, or one that sees no key, gets
// output 0.
//
// Backward (P recomputed from the saved lse_i = log sum_j exp S_ij):
//   dV_g += P^T dO_h,  dP = dO_h V_g^T,  dS = P o (dP - rowsum(P o dP)),
//   dQ_h = scale dS K_g,  dK_g += scale dS^T Q_h.
// Heads sharing a K/V group add their dK/dV (the backward of repeat_kv).
//
// API. Row layouts are transformers': q [rows x heads*hd], k, v [rows x kv_heads*hd].
//   attention_forward(q [nq x H*hd], k [nk x G*hd], v, heads, causal_offset, key_mask [nk] or empty,
//                     out [nq x H*hd])                      one sequence (e.g. against a KV cache)
//   causal_attention_forward(q [B*T x H*hd], k, v [B*T x G*hd], mask [B x T], heads,
//                            out [B*T x H*hd], lse [B*H x T] or empty)     a padded batch
//   causal_attention_backward(q, k, v, mask, heads, lse, grad_out,
//                             grad_q, grad_k, grad_v)       gradients overwritten
// The batch versions run (sequence, head) pairs — (sequence, kv group) in the
// backward pass — in parallel under OpenMP; each pair's arithmetic is the same
// whatever the thread count. Their per-head products go through Eigen's GEMM.
// attention_forward, the decoding path, goes query by query in SIMD packets
// (detail::attention_query_forward: each key and value row read once per kv
// head, the cache prefetched), so a query's bits do not depend on its block;
// its rows must be contiguous.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include <Eigen/Core>

#include "lmrl/error.hpp"
#include "lmrl/model/ops/matmul.hpp"
#include "lmrl/rl/logprob.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl::ops {

namespace detail {

// The columns [h*hd, (h+1)*hd) of rows [first, first+count): one head of one sequence.
template <class T>
matrix_view<T> head_block(matrix_view<T> m, index_t first, index_t count, index_t h, index_t hd) {
  return matrix_view<T>(m.data + first * m.stride[0] + h * hd * m.stride[1], {count, hd}, {m.stride[0], 1});
}

template <class T>
bool visible(vector_view<const T> key_mask, index_t j) {
  return key_mask.data == nullptr || key_mask.size() == 0 || key_mask(j) != T(0);
}

// Key j is visible to a query of sequence `segment` (0: any sequence, as when no query_mask is given).
template <class T>
bool visible(vector_view<const T> key_mask, index_t j, T segment) {
  return key_mask.data == nullptr || key_mask.size() == 0 ||
         (key_mask(j) != T(0) && (segment == T(0) || key_mask(j) == segment));
}

// Per-thread scratch for the [nq x nk] scores (grown once, then reused).
template <class T>
T* scratch(std::size_t slot, std::size_t count) {
  thread_local std::vector<T> buffers[2];
  auto& b = buffers[slot];
  if (b.size() < count) b.resize(count);
  return b.data();
}

// Softmax probabilities of one (sequence, head) block into p [nq x nk]: from
// the raw scores (forward, writes lse) or from the saved lse (backward).
template <class T, bool FromLse>
void attention_probabilities(T* p, index_t nq, index_t nk, index_t causal_offset, vector_view<const T> query_mask,
                             vector_view<const T> key_mask, vector_view<T> lse_out, vector_view<const T> lse_in) {
  for (index_t i = 0; i < nq; ++i) {
    T* row = p + i * nk;
    const index_t end = std::min(nk, std::max<index_t>(0, i + causal_offset));
    const bool active = detail::visible(query_mask, i);
    const T segment = query_mask.data != nullptr && query_mask.size() > 0 ? query_mask(i) : T(0);
    if (!active) {
      std::fill(row, row + nk, T(0));
      if constexpr (!FromLse)
        if (lse_out.data != nullptr) lse_out(i) = T(0);
      continue;
    }
    if constexpr (FromLse) {
      const T l = lse_in(i);
      for (index_t j = 0; j < end; ++j) {
        const T z = row[j] - l;
        row[j] = detail::visible(key_mask, j, segment) ? lmrl::detail::exp_nonpositive(z < T(0) ? z : T(0)) : T(0);
      }
    } else {
      T m = -std::numeric_limits<T>::infinity();
      for (index_t j = 0; j < end; ++j)
        if (detail::visible(key_mask, j, segment)) m = std::max(m, row[j]);
      if (m == -std::numeric_limits<T>::infinity()) {  // sees no key
        std::fill(row, row + nk, T(0));
        if (lse_out.data != nullptr) lse_out(i) = T(0);
        continue;
      }
      double sum = 0;
      for (index_t j = 0; j < end; ++j) {
        const T e = detail::visible(key_mask, j, segment) ? lmrl::detail::exp_nonpositive(row[j] - m) : T(0);
        row[j] = e;
        sum += e;
      }
      const T inv = static_cast<T>(1.0 / sum);
      for (index_t j = 0; j < end; ++j) row[j] *= inv;
      if (lse_out.data != nullptr) lse_out(i) = static_cast<T>(static_cast<double>(m) + std::log(sum));
    }
    std::fill(row + end, row + nk, T(0));
  }
}

// One (sequence, query head): out_h = softmax(scale q_h k_g^T) v_g.
template <class T>
void attention_head_forward(matrix_view<const T> q, matrix_view<const T> k, matrix_view<const T> v,
                            index_t causal_offset, vector_view<const T> query_mask, vector_view<const T> key_mask,
                            T scale, matrix_view<T> out, vector_view<T> lse) {
  const index_t nq = q.shape[0], nk = k.shape[0];
  if (nq == 0) return;
  T* p = scratch<T>(0, static_cast<std::size_t>(nq * std::max<index_t>(nk, 1)));
  matrix_view<T> pv(p, {nq, nk});
  {
    auto s = map(pv);
    s.noalias() = map(q) * map(k).transpose();
    s *= scale;
  }
  attention_probabilities<T, false>(p, nq, nk, causal_offset, query_mask, key_mask, lse, {});
  map(out).noalias() = map(matrix_view<const T>(pv)) * map(v);
}

// One (sequence, query head) backward: grad_q overwritten, grad_k/grad_v accumulated.
template <class T>
void attention_head_backward(matrix_view<const T> q, matrix_view<const T> k, matrix_view<const T> v,
                             index_t causal_offset, vector_view<const T> query_mask, vector_view<const T> key_mask,
                             T scale, vector_view<const T> lse, matrix_view<const T> grad_out, matrix_view<T> grad_q,
                             matrix_view<T> grad_k, matrix_view<T> grad_v) {
  const index_t nq = q.shape[0], nk = k.shape[0];
  if (nq == 0) return;
  const auto count = static_cast<std::size_t>(nq * std::max<index_t>(nk, 1));
  T* p = scratch<T>(0, count);
  T* dp = scratch<T>(1, count);
  matrix_view<T> pv(p, {nq, nk}), dpv(dp, {nq, nk});
  auto P = map(pv);
  auto dP = map(dpv);
  P.noalias() = map(q) * map(k).transpose();
  P *= scale;
  attention_probabilities<T, true>(p, nq, nk, causal_offset, query_mask, key_mask, {}, lse);
  map(grad_v).noalias() += P.transpose() * map(grad_out);
  dP.noalias() = map(grad_out) * map(v).transpose();
  for (index_t i = 0; i < nq; ++i) {  // dS = P o (dP - rowsum(P o dP)), in place of dP
    T* pr = p + i * nk;
    T* dr = dp + i * nk;
    double dot = 0;
    for (index_t j = 0; j < nk; ++j) dot += static_cast<double>(pr[j]) * dr[j];
    const T c = static_cast<T>(dot);
    for (index_t j = 0; j < nk; ++j) dr[j] = pr[j] * (dr[j] - c) * scale;
  }
  map(grad_q).noalias() = dP * map(k);
  map(grad_k).noalias() += dP.transpose() * map(q);
}

// The decoding kernels below work in SIMD packets of Eigen's packet math with
// fixed loop orders: a value's bits never depend on an address or a block size.
template <class T>
using packet_of = typename Eigen::internal::packet_traits<T>::type;

// Asks for rows [first, last) of m (n values each) ahead of their use: the
// cache of one sequence and head is read once per step, from memory.
template <class T>
void prefetch_rows(const T* m, index_t stride, index_t first, index_t last, index_t n) {
  constexpr index_t line = static_cast<index_t>(64 / sizeof(T));
  for (index_t r = first; r < last; ++r)
    for (index_t i = 0; i < n; i += line) Eigen::internal::prefetch(m + r * stride + i);
}

// s[r] = sum_i q[i] k_r[i] for the four rows k_r = k + r * stride, i < n.
template <class T>
void dot4(const T* q, const T* k, index_t stride, index_t n, T* s) {
  using namespace Eigen::internal;
  using P = packet_of<T>;
  constexpr index_t S = packet_traits<T>::size;
  P a0 = pset1<P>(T(0)), a1 = a0, a2 = a0, a3 = a0;
  index_t i = 0;
  for (; i + S <= n; i += S) {
    const P x = ploadu<P>(q + i);
    a0 = pmadd(x, ploadu<P>(k + i), a0);
    a1 = pmadd(x, ploadu<P>(k + stride + i), a1);
    a2 = pmadd(x, ploadu<P>(k + 2 * stride + i), a2);
    a3 = pmadd(x, ploadu<P>(k + 3 * stride + i), a3);
  }
  s[0] = predux(a0), s[1] = predux(a1), s[2] = predux(a2), s[3] = predux(a3);
  for (; i < n; ++i)
    for (index_t r = 0; r < 4; ++r) s[r] += q[i] * k[r * stride + i];
}

template <class T>
T dot(const T* q, const T* k, index_t n) {
  using namespace Eigen::internal;
  using P = packet_of<T>;
  constexpr index_t S = packet_traits<T>::size;
  P a = pset1<P>(T(0));
  index_t i = 0;
  for (; i + S <= n; i += S) a = pmadd(ploadu<P>(q + i), ploadu<P>(k + i), a);
  T sum = predux(a);
  for (; i < n; ++i) sum += q[i] * k[i];
  return sum;
}

// out[i] = sum_j w[j] x[j * stride + i] for i < n, j < rows: the output held in
// registers (four packets, even and odd rows apart: eight independent chains).
template <class T>
void weighted_row_sum(const T* w, const T* x, index_t stride, index_t rows, index_t n, T* out) {
  using namespace Eigen::internal;
  using P = packet_of<T>;
  constexpr index_t S = packet_traits<T>::size;
  index_t i = 0;
  for (; i + 4 * S <= n; i += 4 * S) {
    P e[4], o[4];
    for (index_t u = 0; u < 4; ++u) e[u] = o[u] = pset1<P>(T(0));
    index_t j = 0;
    for (; j + 2 <= rows; j += 2) {
      const P we = pset1<P>(w[j]), wo = pset1<P>(w[j + 1]);
      const T* xe = x + j * stride + i;
      for (index_t u = 0; u < 4; ++u) {
        e[u] = pmadd(we, ploadu<P>(xe + u * S), e[u]);
        o[u] = pmadd(wo, ploadu<P>(xe + stride + u * S), o[u]);
      }
    }
    if (j < rows) {
      const P we = pset1<P>(w[j]);
      for (index_t u = 0; u < 4; ++u) e[u] = pmadd(we, ploadu<P>(x + j * stride + i + u * S), e[u]);
    }
    for (index_t u = 0; u < 4; ++u) pstoreu(out + i + u * S, padd(e[u], o[u]));
  }
  for (; i + S <= n; i += S) {
    P e = pset1<P>(T(0));
    for (index_t j = 0; j < rows; ++j) e = pmadd(pset1<P>(w[j]), ploadu<P>(x + j * stride + i), e);
    pstoreu(out + i, e);
  }
  for (; i < n; ++i) {
    T sum = 0;
    for (index_t j = 0; j < rows; ++j) sum += w[j] * x[j * stride + i];
    out[i] = sum;
  }
}

// One query row of the `group` heads sharing a kv head, against keys and
// values k, v [nk x hd] (row stride k_stride / v_stride), keys j < end that
// key_mask shows: out_h = softmax(scale q_h k^T) v for each head h. Each block
// of four key rows is read once for all the heads of the group (decoding
// reads the cache, not the weights, here). out gets 0 when no key is visible.
template <class T>
void attention_query_forward(const T* q, const T* k, index_t k_stride, const T* v, index_t v_stride, index_t end,
                             index_t hd, index_t group, vector_view<const T> key_mask, T scale, T* out) {
  const index_t n = std::max<index_t>(end, 1);
  T* scores = scratch<T>(0, static_cast<std::size_t>(group * n));  // [group x end]
  index_t j = 0;
  for (; j + 4 <= end; j += 4) {
    prefetch_rows(k, k_stride, j + 4 * 4, std::min<index_t>(j + 5 * 4, end), hd);
    prefetch_rows(v, v_stride, j, j + 4, hd);  // the values are read next
    for (index_t h = 0; h < group; ++h) dot4(q + h * hd, k + j * k_stride, k_stride, hd, scores + h * n + j);
  }
  for (; j < end; ++j)
    for (index_t h = 0; h < group; ++h) scores[h * n + j] = dot(q + h * hd, k + j * k_stride, hd);
  for (index_t h = 0; h < group; ++h) {
    T* p = scores + h * n;
    T m = -std::numeric_limits<T>::infinity();
    for (index_t i = 0; i < end; ++i) {
      p[i] *= scale;
      if (visible(key_mask, i)) m = std::max(m, p[i]);
    }
    if (m == -std::numeric_limits<T>::infinity()) {  // sees no key
      std::fill_n(out + h * hd, hd, T(0));
      continue;
    }
    double sum = 0;
    for (index_t i = 0; i < end; ++i) {
      p[i] = visible(key_mask, i) ? lmrl::detail::exp_nonpositive(p[i] - m) : T(0);
      sum += p[i];
    }
    const T inv = static_cast<T>(1.0 / sum);
    for (index_t i = 0; i < end; ++i) p[i] *= inv;
    weighted_row_sum(p, v, v_stride, end, hd, out + h * hd);
  }
}

template <class T>
T default_scale(index_t hd) {
  return static_cast<T>(1.0 / std::sqrt(static_cast<double>(hd)));
}

inline void check_heads(const char* f, index_t q_cols, index_t kv_cols, index_t heads) {
  lmrl::detail::require(heads > 0 && q_cols % heads == 0, f, ": q has ", q_cols, " columns, not a multiple of heads = ",
                        heads);
  const index_t hd = q_cols / heads;
  lmrl::detail::require(hd > 0 && kv_cols % hd == 0 && kv_cols > 0 && heads % (kv_cols / hd) == 0, f, ": k/v have ",
                        kv_cols, " columns, which is not a number of kv heads of head_dim ", hd, " dividing heads = ",
                        heads);
}

}  // namespace detail

// One sequence's block of queries against its keys/values (e.g. a KV cache),
// one query at a time with every key and value row read once per kv head.
template <class T>
void attention_forward(matrix_view<const std::type_identity_t<T>> q, matrix_view<const std::type_identity_t<T>> k,
                       matrix_view<const std::type_identity_t<T>> v, index_t heads, index_t causal_offset,
                       vector_view<const std::type_identity_t<T>> key_mask, matrix_view<T> out) {
  const char* f = "attention_forward";
  detail::check_heads(f, q.shape[1], k.shape[1], heads);
  lmrl::detail::require(v.shape == k.shape, f, ": v has shape ", v, " but k has shape ", k);
  lmrl::detail::require(out.shape == q.shape, f, ": out has shape ", out, " but q has shape ", q);
  lmrl::detail::require(key_mask.size() == 0 || key_mask.shape[0] == k.shape[0], f, ": key_mask has ",
                        key_mask.shape[0], " elements but there are ", k.shape[0], " keys");
  lmrl::detail::require(q.shape[1] <= 1 || q.stride[1] == 1, f, ": q must have contiguous rows");
  lmrl::detail::require((k.shape[1] <= 1 || k.stride[1] == 1) && (v.shape[1] <= 1 || v.stride[1] == 1), f,
                        ": k and v must have contiguous rows");
  lmrl::detail::require(out.shape[1] <= 1 || out.stride[1] == 1, f, ": out must have contiguous rows");
  const index_t hd = q.shape[1] / heads, kv_heads = k.shape[1] / hd, group = heads / kv_heads;
  const index_t nq = q.shape[0], nk = k.shape[0];
  const T scale = detail::default_scale<T>(hd);
  // Query by query: a query's bits do not depend on the other queries of the block.
  for (index_t i = 0; i < nq; ++i) {
    const index_t end = std::min(nk, std::max<index_t>(0, i + causal_offset));
    for (index_t g = 0; g < kv_heads; ++g)
      detail::attention_query_forward<T>(q.row_data(i) + g * group * hd, k.data + g * hd, k.stride[0],
                                         v.data + g * hd, v.stride[0], end, hd, group, key_mask, scale,
                                         out.row_data(i) + g * group * hd);
  }
}

// A padded batch of B sequences of T tokens, rows b*T + t.
template <class T>
void causal_attention_forward(matrix_view<const std::type_identity_t<T>> q,
                              matrix_view<const std::type_identity_t<T>> k,
                              matrix_view<const std::type_identity_t<T>> v,
                              matrix_view<const std::type_identity_t<T>> mask, index_t heads, matrix_view<T> out,
                              matrix_view<T> lse) {
  const char* f = "causal_attention_forward";
  const index_t B = mask.shape[0], L = mask.shape[1];
  detail::check_heads(f, q.shape[1], k.shape[1], heads);
  lmrl::detail::require(q.shape[0] == B * L && k.shape[0] == B * L && v.shape == k.shape, f, ": q ", q, ", k ", k,
                        ", v ", v, " must have ", B * L, " rows for a mask of shape ", mask);
  lmrl::detail::require(out.shape == q.shape, f, ": out has shape ", out, " but q has shape ", q);
  const bool keep = lse.data != nullptr && lse.size() > 0;
  lmrl::detail::require(!keep || (lse.shape[0] == B * heads && lse.shape[1] == L), f, ": lse has shape ", lse,
                        " but needs [", B * heads, " x ", L, "]");
  const index_t hd = q.shape[1] / heads, group = heads / (k.shape[1] / hd);
  const T scale = detail::default_scale<T>(hd);
#if defined(_OPENMP)
#pragma omp parallel for schedule(dynamic, 1)
#endif
  for (index_t bh = 0; bh < B * heads; ++bh) {
    const index_t b = bh / heads, h = bh % heads;
    const auto m = mask.row(b);
    detail::attention_head_forward<T>(detail::head_block(q, b * L, L, h, hd),
                                      detail::head_block(k, b * L, L, h / group, hd),
                                      detail::head_block(v, b * L, L, h / group, hd), 1, m, m, scale,
                                      detail::head_block(out, b * L, L, h, hd), keep ? lse.row(bh) : vector_view<T>{});
  }
}

template <class T>
void causal_attention_backward(matrix_view<const std::type_identity_t<T>> q,
                               matrix_view<const std::type_identity_t<T>> k,
                               matrix_view<const std::type_identity_t<T>> v,
                               matrix_view<const std::type_identity_t<T>> mask, index_t heads,
                               matrix_view<const std::type_identity_t<T>> lse,
                               matrix_view<const std::type_identity_t<T>> grad_out, matrix_view<T> grad_q,
                               matrix_view<T> grad_k, matrix_view<T> grad_v) {
  const char* f = "causal_attention_backward";
  const index_t B = mask.shape[0], L = mask.shape[1];
  detail::check_heads(f, q.shape[1], k.shape[1], heads);
  lmrl::detail::require(q.shape[0] == B * L && k.shape[0] == B * L && v.shape == k.shape, f, ": q ", q, ", k ", k,
                        ", v ", v, " must have ", B * L, " rows for a mask of shape ", mask);
  lmrl::detail::require(grad_out.shape == q.shape && grad_q.shape == q.shape, f, ": grad_out ", grad_out,
                        " and grad_q ", grad_q, " must have q's shape ", q);
  lmrl::detail::require(grad_k.shape == k.shape && grad_v.shape == k.shape, f, ": grad_k ", grad_k, " and grad_v ",
                        grad_v, " must have k's shape ", k);
  lmrl::detail::require(lse.shape[0] == B * heads && lse.shape[1] == L, f, ": lse has shape ", lse, " but needs [",
                        B * heads, " x ", L, "] (from causal_attention_forward)");
  const index_t hd = q.shape[1] / heads, kv_heads = k.shape[1] / hd, group = heads / kv_heads;
  const T scale = detail::default_scale<T>(hd);
#if defined(_OPENMP)
#pragma omp parallel for schedule(dynamic, 1)
#endif
  for (index_t bg = 0; bg < B * kv_heads; ++bg) {
    const index_t b = bg / kv_heads, g = bg % kv_heads;
    const auto m = mask.row(b);
    auto dk = detail::head_block(grad_k, b * L, L, g, hd);
    auto dv = detail::head_block(grad_v, b * L, L, g, hd);
    detail::map(dk).setZero();
    detail::map(dv).setZero();
    for (index_t h = g * group; h < (g + 1) * group; ++h)  // the heads sharing group g, in order
      detail::attention_head_backward<T>(detail::head_block(q, b * L, L, h, hd), detail::head_block(k, b * L, L, g, hd),
                                         detail::head_block(v, b * L, L, g, hd), 1, m, m, scale, lse.row(b * heads + h),
                                         detail::head_block(grad_out, b * L, L, h, hd),
                                         detail::head_block(grad_q, b * L, L, h, hd), dk, dv);
  }
}

}  // namespace lmrl::ops
