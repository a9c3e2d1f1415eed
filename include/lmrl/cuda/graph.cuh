// CUDA graphs for work that repeats with the same shape (a decode step): the
// kernels a function queues on a stream are captured once into a graph and
// then replayed with one launch, which saves the launch overhead of each
// kernel (a few microseconds apiece, the bulk of a batch-1 decode step of a
// small model). RAII owners for a stream and an instantiated graph.
//
//   owned_stream stream;                                   // non-blocking: capture cannot use the legacy stream
//   graph_exec g = capture_graph(stream.get(), [&] { queue_kernels(stream.get()); });
//   g.launch(stream.get());                                // replays them, reading the buffers they named
//
// A graph keeps the arguments of its kernels (pointers, sizes) as they were at
// capture: replay it only while every buffer it names still lives at the same
// address and holds the inputs of this run. The captured function must queue
// work only (no allocation, no synchronization, no host read of device data).
#pragma once

#include <cuda_runtime.h>

#include <utility>

#include "lmrl/cuda/check.cuh"

namespace lmrl::cuda {

class owned_stream {
 public:
  owned_stream() { LMRL_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking)); }
  owned_stream(const owned_stream&) = delete;
  owned_stream& operator=(const owned_stream&) = delete;
  owned_stream(owned_stream&& o) noexcept : stream_(std::exchange(o.stream_, nullptr)) {}
  owned_stream& operator=(owned_stream&& o) noexcept {
    if (this != &o) {
      release();
      stream_ = std::exchange(o.stream_, nullptr);
    }
    return *this;
  }
  ~owned_stream() { release(); }
  cudaStream_t get() const { return stream_; }

 private:
  void release() {
    if (stream_) cudaStreamDestroy(stream_);  // not checked: a destructor must not throw
    stream_ = nullptr;
  }
  cudaStream_t stream_ = nullptr;
};

class graph_exec {
 public:
  graph_exec() = default;
  explicit graph_exec(cudaGraphExec_t exec) : exec_(exec) {}
  graph_exec(const graph_exec&) = delete;
  graph_exec& operator=(const graph_exec&) = delete;
  graph_exec(graph_exec&& o) noexcept : exec_(std::exchange(o.exec_, nullptr)) {}
  graph_exec& operator=(graph_exec&& o) noexcept {
    if (this != &o) {
      release();
      exec_ = std::exchange(o.exec_, nullptr);
    }
    return *this;
  }
  ~graph_exec() { release(); }

  bool captured() const { return exec_ != nullptr; }

  void launch(cudaStream_t stream) const {
    lmrl::detail::require(exec_ != nullptr, "cuda::graph_exec::launch: no graph");
    LMRL_CUDA_CHECK(cudaGraphLaunch(exec_, stream));
  }

 private:
  void release() {
    if (exec_) cudaGraphExecDestroy(exec_);
    exec_ = nullptr;
  }
  cudaGraphExec_t exec_ = nullptr;
};

// The work `queue` puts on `stream` (which must not be the legacy default stream), captured and
// instantiated, not run. If `queue` throws, the capture is ended and discarded and the error passes on.
template <class F>
graph_exec capture_graph(cudaStream_t stream, F&& queue) {
  lmrl::detail::require(stream != nullptr, "cuda::capture_graph: the legacy default stream cannot be captured");
  // Relaxed: the captured code's own calls (cuBLAS's) are not second-guessed; it allocates nothing here.
  LMRL_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed));
  try {
    queue();
  } catch (...) {
    cudaGraph_t partial = nullptr;
    cudaStreamEndCapture(stream, &partial);  // not checked: the first error is the one to report
    if (partial) cudaGraphDestroy(partial);
    cudaGetLastError();  // clear what the aborted capture left (not a sticky error)
    throw;
  }
  cudaGraph_t graph = nullptr;
  LMRL_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  cudaGraphExec_t exec = nullptr;
  const cudaError_t code = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);  // the executable graph keeps what it needs
  check(code, "cudaGraphInstantiate(&exec, graph, 0)", __FILE__, __LINE__);
  return graph_exec(exec);
}

}  // namespace lmrl::cuda
