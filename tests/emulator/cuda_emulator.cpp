// The CPU emulator's runtime (see cuda_emulator.hpp for what it is and is
// not): the block scheduler, the CUDA runtime calls lmrl makes, cuBLAS's
// GemmEx and a cuBLASLt that offers no algorithm. Everything runs on the
// calling thread at the time of the call, except work on a stream that is
// being captured, which is recorded and runs when the graph is launched.
#include "cuda_emulator.hpp"

#include <cxxabi.h>
#include <dlfcn.h>
#include <sys/mman.h>
#include <ucontext.h>

#include <Eigen/Core>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace lmrl_cuda_emulator {
namespace {

[[noreturn]] void fail(const std::string& what) { throw std::logic_error("CUDA emulator: " + what); }

// The runtime's and the libraries' opaque handles: an Object behind each.
template <class Object, class Handle>
cudaError_t make_handle(Handle* handle, Object object = {}) {
  *handle = reinterpret_cast<Handle>(new Object(std::move(object)));
  return cudaSuccess;
}
template <class Object, class Handle>
cudaError_t free_handle(Handle handle) {
  delete reinterpret_cast<Object*>(handle);
  return cudaSuccess;
}
template <class Object, class Handle>
cublasStatus_t make_blas_handle(Handle* handle) {
  make_handle<Object>(handle);
  return CUBLAS_STATUS_SUCCESS;
}
template <class Object, class Handle>
cublasStatus_t free_blas_handle(Handle handle) {
  free_handle<Object>(handle);
  return CUBLAS_STATUS_SUCCESS;
}
struct lt_descriptor {};  // cuBLASLt's descriptors: accepted, kept nowhere

std::string kernel_name(const void* kernel) {
  Dl_info info{};
  if (dladdr(kernel, &info) == 0 || info.dli_sname == nullptr) return "a kernel";
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> demangled(abi::__cxa_demangle(info.dli_sname, nullptr, nullptr, &status),
                                                   std::free);
  return status == 0 ? demangled.get() : info.dli_sname;
}

// ---------------------------------------------------------------------------------------------------------------
// Memory: every allocation the runtime hands out, by its first address.

enum class memory { device, managed };
struct allocation {
  std::size_t bytes;
  memory kind;
};
std::map<std::uintptr_t, allocation>& allocations() {
  static std::map<std::uintptr_t, allocation> map;
  return map;
}

// The allocation holding [p, p + bytes) (one past the end counts for an empty range), or null.
const allocation* find_allocation(const void* p, std::size_t bytes) {
  const auto address = reinterpret_cast<std::uintptr_t>(p);
  auto& map = allocations();
  auto it = map.upper_bound(address);
  if (it == map.begin()) return nullptr;
  --it;
  const std::uintptr_t begin = it->first, end = begin + it->second.bytes;
  if (address > end || bytes > end - address || (bytes > 0 && address == end)) return nullptr;
  return &it->second;
}

std::string describe(const void* p) {
  std::ostringstream out;
  out << p;
  return out.str();
}

}  // namespace

// Fails unless [p, p + bytes) lies inside one device or managed allocation.
void require_device(const void* p, std::size_t bytes, const std::string& what) {
  if (bytes == 0) return;
  if (find_allocation(p, bytes) == nullptr)
    fail(what + ": [" + describe(p) + ", +" + std::to_string(bytes) +
         " bytes) is not inside one device allocation (a host pointer, or past the end)");
}

namespace {

void require_host_range(const void* p, std::size_t bytes, const std::string& what) {
  if (bytes == 0) return;
  const allocation* a = find_allocation(p, bytes);
  if (a != nullptr && a->kind == memory::device)
    fail(what + ": " + describe(p) + " is device memory where the copy's kind names host memory");
  if (p == nullptr) fail(what + ": a null host pointer");
}

void* allocate(std::size_t bytes, memory kind) {
  // cudaMalloc's 256-byte alignment, and no padding after the last byte: under AddressSanitizer a kernel's
  // read past the end faults, as under compute-sanitizer.
  const std::size_t size = std::max<std::size_t>(bytes, 1);
  void* p = nullptr;
  if (posix_memalign(&p, 256, size) != 0) return nullptr;
  std::memset(p, 0xff, size);  // NaN as floats: a read before the first write shows
  allocations().emplace(reinterpret_cast<std::uintptr_t>(p), allocation{bytes, kind});
  return p;
}

cudaError_t release(void* p) {
  if (p == nullptr) return cudaSuccess;
  auto& map = allocations();
  const auto it = map.find(reinterpret_cast<std::uintptr_t>(p));
  if (it == map.end()) fail("cudaFree(" + describe(p) + "): not an allocation of cudaMalloc (or freed twice)");
  map.erase(it);
  std::free(p);
  return cudaSuccess;
}

// ---------------------------------------------------------------------------------------------------------------
// Streams and graph capture. A stream handle points at one of these; the legacy stream (null) has none.

struct stream_state {
  unsigned flags = 0;
  std::vector<std::function<void()>>* capture = nullptr;  // where work goes while the stream is being captured
};
std::set<stream_state*>& streams() {
  static std::set<stream_state*> set;
  return set;
}
stream_state* state_of(cudaStream_t stream) {
  if (stream == nullptr) return nullptr;
  auto* s = reinterpret_cast<stream_state*>(stream);
  if (streams().count(s) == 0) fail("a stream handle that cudaStreamCreate did not make (or destroyed)");
  return s;
}

struct graph {
  std::vector<std::function<void()>> work;
};

}  // namespace

void submit(cudaStream_t stream, std::function<void()> work) {
  stream_state* s = state_of(stream);
  if (s == nullptr) {
    for (stream_state* other : streams())
      if (other->capture != nullptr && (other->flags & cudaStreamNonBlocking) == 0)
        fail("work on the legacy stream while a blocking stream is captured (cudaErrorStreamCaptureImplicit)");
  }
  if (s != nullptr && s->capture != nullptr) {
    s->capture->push_back(std::move(work));
    return;
  }
  work();
}


// ---------------------------------------------------------------------------------------------------------------
// The block scheduler.
//
// Each thread slot of a block is a fiber with its own stack, made once and reused by every block and launch:
// it runs the kernel body, marks itself done and parks until the next block starts it again. A thread runs until
// it parks (at a barrier or warp collective that others have yet to reach) or finishes; the last thread to
// reach a barrier or a collective completes it for all and runs on. A block that fails leaves its fibers
// mid-kernel: they start afresh on their next use.

namespace {

constexpr std::size_t stack_bytes = 256 << 10;
constexpr std::size_t guard_bytes = 4096;

#if defined(__x86_64__)
// The System V callee-saved registers. MXCSR and the x87 control word are not switched: no kernel changes
// the rounding mode.
extern "C" void lmrl_emulator_switch(void** save_sp, void* load_sp);
asm(R"(
  .text
  .globl lmrl_emulator_switch
  .type lmrl_emulator_switch, @function
lmrl_emulator_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size lmrl_emulator_switch, .-lmrl_emulator_switch
)");

struct context {
  void* sp = nullptr;
};
// A stack whose first switch "returns" into entry, as if entry had just been called.
void prepare(context& c, char* stack, std::size_t bytes, void (*entry)()) {
  // From the top: 8 bytes of padding, entry as the return address (16-byte aligned, so that entry starts
  // with the stack as a call leaves it), then the six registers the switch pops (zeros).
  auto top = reinterpret_cast<std::uintptr_t>(stack + bytes) & ~std::uintptr_t{15};
  auto* frame = reinterpret_cast<std::uint64_t*>(top - 16 - 48);
  std::memset(frame, 0, 64);
  frame[6] = reinterpret_cast<std::uint64_t>(entry);
  c.sp = frame;
}
void jump(context& from, context& to) { lmrl_emulator_switch(&from.sp, to.sp); }
#else
// Elsewhere the portable way (a system call per switch for the signal mask: slower).
struct context {
  ucontext_t uc{};
};
void prepare(context& c, char* stack, std::size_t bytes, void (*entry)()) {
  getcontext(&c.uc);
  c.uc.uc_stack.ss_sp = stack;
  c.uc.uc_stack.ss_size = bytes;
  c.uc.uc_link = nullptr;
  makecontext(&c.uc, entry, 0);
}
void jump(context& from, context& to) { swapcontext(&from.uc, &to.uc); }
#endif

enum class thread_state { runnable, at_barrier, at_warp, done };

struct device_thread {
  context where;
  char* stack = nullptr;
  bool fresh = true;  // starts at the top of its stack on its next switch
  thread_state state = thread_state::done;
  const char* barrier_file = nullptr;
  int barrier_line = 0;
  // The warp collective it is in.
  unsigned mask = 0;
  shuffle_kind kind = shuffle_kind::sync;
  std::uint64_t value = 0, result = 0;
  int parameter = 0, width = 32;
};

struct warp_meeting {
  unsigned arrived = 0;  // lanes in the collective so far
  unsigned mask = 0;     // the first arriver's
  shuffle_kind kind = shuffle_kind::sync;
  int width = 32;
};

struct block_runner {
  std::vector<device_thread> threads;
  std::vector<warp_meeting> warps;
  context scheduler;
  unsigned n = 0;                   // threads in the running block
  unsigned at_barrier = 0, done = 0;
  int current = -1;
  std::function<void()>* body = nullptr;
  std::string failure;
  std::unique_ptr<unsigned char[]> dynamic_shared;  // exactly the launch's bytes: AddressSanitizer sees overflows
  std::map<const void*, int> max_dynamic_shared;  // cudaFuncSetAttribute
  bool running = false;

  ~block_runner() {
    for (auto& t : threads)
      if (t.stack != nullptr) munmap(t.stack - guard_bytes, stack_bytes + guard_bytes);
  }

  device_thread& self() {
    if (!running || current < 0) fail("a device intrinsic called outside a kernel");
    return threads[static_cast<std::size_t>(current)];
  }

  void park() { jump(self().where, scheduler); }

  // Records the first failure and parks for good: the scheduler throws it.
  [[noreturn]] void stop(const std::string& what) {
    if (failure.empty()) failure = what;
    park();
    std::abort();  // never resumed
  }

  void switch_to(unsigned i);
  static void entry();
  void run_block(dim3 block);
  std::string open_barrier();
  void complete_warp(unsigned w0);
  std::string states() const;
};

block_runner& runner() {
  static block_runner r;
  return r;
}

void block_runner::entry() {
  block_runner& r = runner();
  const auto me = static_cast<std::size_t>(r.current);
  for (;;) {
    try {
      (*r.body)();
    } catch (const std::exception& e) {
      r.stop(std::string("a device thread threw: ") + e.what());
    } catch (...) {
      r.stop("a device thread threw");
    }
    r.threads[me].state = thread_state::done;
    ++r.done;
    r.park();  // resumed by the next block
  }
}

uint3 thread_index(unsigned linear, dim3 block) {
  return uint3{linear % block.x, (linear / block.x) % block.y, linear / (block.x * block.y)};
}

void block_runner::switch_to(unsigned i) {
  device_thread& t = threads[i];
  if (t.stack == nullptr) {
    void* m = mmap(nullptr, stack_bytes + guard_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) fail("no memory for a device thread's stack");
    mprotect(m, guard_bytes, PROT_NONE);  // an overflow faults instead of writing over the next stack
    t.stack = static_cast<char*>(m) + guard_bytes;
  }
  if (t.fresh) {
    prepare(t.where, t.stack, stack_bytes, &block_runner::entry);
    t.fresh = false;
  }
  current = static_cast<int>(i);
  jump(scheduler, t.where);
  current = -1;
}

std::string block_runner::states() const {
  std::ostringstream out;
  int shown = 0;
  for (unsigned i = 0; i < n && shown < 8; ++i) {
    const auto& t = threads[i];
    if (t.state == thread_state::done) continue;
    out << " thread " << i;
    if (t.state == thread_state::at_barrier)
      out << " at __syncthreads (" << t.barrier_file << ":" << t.barrier_line << ");";
    else
      out << " in a warp collective (mask " << std::hex << t.mask << std::dec << ");";
    ++shown;
  }
  return out.str();
}

// Every thread not done is at a barrier: they must all be at the same one, and then all go on. Returns what
// is wrong, or nothing.
std::string block_runner::open_barrier() {
  const device_thread* first = nullptr;
  for (unsigned i = 0; i < n; ++i) {
    device_thread& t = threads[i];
    if (t.state != thread_state::at_barrier) continue;
    if (first == nullptr) first = &t;
    if (t.barrier_line != first->barrier_line || std::strcmp(t.barrier_file, first->barrier_file) != 0)
      return "threads of one block wait at two different __syncthreads (" + std::string(first->barrier_file) + ":" +
             std::to_string(first->barrier_line) + " and " + t.barrier_file + ":" + std::to_string(t.barrier_line) +
             "): a barrier in divergent code";
  }
  for (unsigned i = 0; i < n; ++i)
    if (threads[i].state == thread_state::at_barrier) threads[i].state = thread_state::runnable;
  at_barrier = 0;
  return {};
}

// Every lane of the meeting's mask has arrived: each gets the value of the lane it reads.
void block_runner::complete_warp(unsigned w0) {
  warp_meeting& m = warps[w0 / 32];
  const unsigned lanes = std::min(32u, n - w0);
  for (unsigned l = 0; l < lanes; ++l) {
    if ((m.mask >> l & 1u) == 0) continue;
    device_thread& t = threads[w0 + l];
    const int width = t.width;
    const int lane = static_cast<int>(l), segment = lane / width * width;
    int source = lane;
    switch (t.kind) {
      case shuffle_kind::xor_lanes: source = lane ^ t.parameter; break;
      case shuffle_kind::down: source = lane % width + t.parameter < width ? lane + t.parameter : lane; break;
      case shuffle_kind::index: source = segment + ((t.parameter % width) + width) % width; break;
      case shuffle_kind::sync: break;
    }
    if (source < 0 || source / width * width != segment || source >= static_cast<int>(lanes)) source = lane;
    if ((m.mask >> source & 1u) == 0)
      stop("lane " + std::to_string(lane) + " of warp " + std::to_string(w0 / 32) + " shuffles from lane " +
           std::to_string(source) + ", which the mask leaves out (an undefined value on a GPU)");
    t.result = threads[w0 + static_cast<unsigned>(source)].value;
  }
  for (unsigned l = 0; l < lanes; ++l)
    if (m.mask >> l & 1u) threads[w0 + l].state = thread_state::runnable;
  m.arrived = 0;
}

void block_runner::run_block(dim3 block) {
  for (unsigned i = 0; i < n; ++i) threads[i].state = thread_state::runnable;
  for (auto& w : warps) w.arrived = 0;
  at_barrier = done = 0;
  for (;;) {
    bool ran = false;
    for (unsigned i = 0; i < n; ++i) {
      if (threads[i].state != thread_state::runnable) continue;
      threadIdx = thread_index(i, block);
      switch_to(i);
      ran = true;
      if (!failure.empty()) fail(failure);
    }
    if (done == n) return;
    if (ran) continue;
    // Nobody can run: the threads not done are all at one barrier (exited threads count as arrived), or stuck.
    if (at_barrier > 0 && at_barrier + done == n) {
      if (const std::string wrong = open_barrier(); !wrong.empty()) fail(wrong);
      continue;
    }
    for (unsigned w0 = 0; w0 < n; w0 += 32)
      for (unsigned l = 0; l < std::min(32u, n - w0); ++l)
        if (warps[w0 / 32].arrived != 0 && (warps[w0 / 32].mask >> l & 1u) &&
            threads[w0 + l].state == thread_state::done)
          fail("lane " + std::to_string(l) + " of warp " + std::to_string(w0 / 32) +
               " is named in a warp collective's mask but has exited");
    fail("the block's threads wait on each other forever:" + states());
  }
}

}  // namespace

void syncthreads_at(const char* file, int line) {
  block_runner& r = runner();
  device_thread& t = r.self();
  t.state = thread_state::at_barrier;
  t.barrier_file = file;
  t.barrier_line = line;
  if (++r.at_barrier + r.done < r.n) {
    r.park();
    return;
  }
  // The last to arrive lets everyone through, itself included.
  if (const std::string wrong = r.open_barrier(); !wrong.empty()) r.stop(wrong);
}

std::uint64_t warp_collective(unsigned mask, shuffle_kind kind, std::uint64_t value, int parameter, int width) {
  block_runner& r = runner();
  device_thread& t = r.self();
  const auto index = static_cast<unsigned>(r.current);
  const unsigned w0 = index / 32 * 32, lane = index % 32, lanes = std::min(32u, r.n - w0);
  if ((mask >> lane & 1u) == 0) r.stop("a lane calls a warp collective whose mask leaves it out");
  if (width <= 0 || width > 32 || (width & (width - 1)) != 0)
    r.stop("a shuffle width of " + std::to_string(width) + " (a power of 2 up to 32)");
  warp_meeting& m = r.warps[index / 32];
  if (m.arrived == 0) {
    m.mask = mask;
    m.kind = kind;
    m.width = width;
  } else if (m.mask != mask || m.kind != kind || m.width != width) {
    r.stop("the lanes of warp " + std::to_string(index / 32) +
           " meet in different warp collectives (mask, kind or width differ)");
  }
  t.state = thread_state::at_warp;
  t.mask = mask;
  t.kind = kind;
  t.value = value;
  t.parameter = parameter;
  t.width = width;
  m.arrived |= 1u << lane;
  const unsigned existing = lanes == 32 ? ~0u : (1u << lanes) - 1;
  if ((m.arrived & mask & existing) == (mask & existing))
    r.complete_warp(w0);  // the last lane: all go on, itself included
  else
    r.park();
  return t.result;
}

void* dynamic_shared_memory() { return runner().dynamic_shared.get(); }

void check_kernel_pointer(const void* kernel, int argument, const void* p) {
  if (p == nullptr || find_allocation(p, 0) != nullptr) return;
  fail("argument " + std::to_string(argument) + " of " + kernel_name(kernel) + " is " + describe(p) +
       ", not device memory (a host pointer, or a freed one)");
}

void set_max_dynamic_shared(const void* kernel, int bytes) { runner().max_dynamic_shared[kernel] = bytes; }

void run_grid(const void* kernel, dim3 grid, dim3 block, std::size_t shared_bytes, cudaStream_t stream,
              std::function<void()> body) {
  const unsigned long long threads = 1ull * block.x * block.y * block.z;
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || threads == 0)
    fail("an empty launch of " + kernel_name(kernel) + " (cudaErrorInvalidConfiguration on a GPU)");
  if (threads > 1024 || block.z > 64 || grid.y > 65535 || grid.z > 65535 || grid.x > 2147483647u)
    fail("a launch of " + kernel_name(kernel) + " past the limits (block of " + std::to_string(threads) +
         " threads; grid " + std::to_string(grid.x) + " x " + std::to_string(grid.y) + " x " +
         std::to_string(grid.z) + ")");
  const auto limit = runner().max_dynamic_shared.find(kernel);
  const std::size_t allowed =
      limit == runner().max_dynamic_shared.end() ? 48u << 10 : static_cast<std::size_t>(limit->second);
  if (shared_bytes > allowed)
    fail("a launch of " + kernel_name(kernel) + " asks " + std::to_string(shared_bytes) +
         " bytes of dynamic shared memory, over the " + std::to_string(allowed) +
         " its cudaFuncSetAttribute allows (cudaErrorInvalidValue on a GPU)");
  submit(stream, [=]() mutable {
    block_runner& r = runner();
    if (r.running) fail("a kernel launched from a kernel");
    r.body = &body;
    r.running = true;
    r.n = static_cast<unsigned>(threads);
    if (r.threads.size() < r.n) r.threads.resize(r.n);
    r.warps.resize((r.n + 31) / 32);
    gridDim = grid;
    blockDim = block;
    r.dynamic_shared.reset(new unsigned char[std::max<std::size_t>(shared_bytes, 1)]);
    try {
      for (unsigned z = 0; z < grid.z; ++z)
        for (unsigned y = 0; y < grid.y; ++y)
          for (unsigned x = 0; x < grid.x; ++x) {
            blockIdx = uint3{x, y, z};
            std::memset(r.dynamic_shared.get(), 0xff, shared_bytes);  // uninitialized on a GPU: poisoned here
            r.run_block(block);
          }
    } catch (const std::exception& e) {
      r.running = false;
      r.failure.clear();
      for (auto& t : r.threads) t.fresh = true;  // abandoned mid-kernel
      throw std::logic_error(std::string(e.what()) + " [in " + kernel_name(kernel) + ", block (" +
                             std::to_string(blockIdx.x) + ", " + std::to_string(blockIdx.y) + ", " +
                             std::to_string(blockIdx.z) + ")]");
    }
    r.running = false;
  });
}

}  // namespace lmrl_cuda_emulator

// ===============================================================================================================
// The CUDA runtime.

namespace emu = lmrl_cuda_emulator;

extern "C" {

cudaError_t CUDARTAPI cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaSetDevice(int device) { return device == 0 ? cudaSuccess : cudaErrorInvalidDevice; }

// An A100's answers (sm_80): no FP8 tensor cores, so the tests take the paths such a card takes.
cudaError_t CUDARTAPI cudaDeviceGetAttribute(int* value, enum cudaDeviceAttr attribute, int device) {
  if (device != 0) return cudaErrorInvalidDevice;
  switch (attribute) {
    case cudaDevAttrComputeCapabilityMajor: *value = 8; return cudaSuccess;
    case cudaDevAttrComputeCapabilityMinor: *value = 0; return cudaSuccess;
    case cudaDevAttrMultiProcessorCount: *value = 108; return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = 163 << 10; return cudaSuccess;
    case cudaDevAttrMaxThreadsPerBlock: *value = 1024; return cudaSuccess;
    case cudaDevAttrWarpSize: *value = 32; return cudaSuccess;
    default: emu::fail("cudaDeviceGetAttribute: attribute " + std::to_string(static_cast<int>(attribute)) +
                       " is not emulated");
  }
}

cudaError_t CUDARTAPI cudaGetDeviceProperties(struct cudaDeviceProp* prop, int device) {
  if (device != 0) return cudaErrorInvalidDevice;
  *prop = cudaDeviceProp{};
  std::snprintf(prop->name, sizeof(prop->name), "lmrl CPU emulator (as sm_80)");
  prop->major = 8;
  prop->minor = 0;
  prop->multiProcessorCount = 108;
  prop->totalGlobalMem = std::size_t{40} << 30;
  prop->sharedMemPerBlock = 48 << 10;
  prop->sharedMemPerBlockOptin = 163 << 10;
  prop->maxThreadsPerBlock = 1024;
  prop->warpSize = 32;
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaDeviceSynchronize(void) { return cudaSuccess; }
// A launch the emulator refuses throws at the launch, with what is wrong: no error is left for later.
cudaError_t CUDARTAPI cudaGetLastError(void) { return cudaSuccess; }
cudaError_t CUDARTAPI cudaPeekAtLastError(void) { return cudaSuccess; }

const char* CUDARTAPI cudaGetErrorName(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
    default: return "cudaError (emulated)";
  }
}
const char* CUDARTAPI cudaGetErrorString(cudaError_t error) { return cudaGetErrorName(error); }

cudaError_t CUDARTAPI cudaMalloc(void** p, size_t bytes) {
  *p = emu::allocate(bytes, emu::memory::device);
  return *p == nullptr ? cudaErrorMemoryAllocation : cudaSuccess;
}
cudaError_t CUDARTAPI cudaMallocManaged(void** p, size_t bytes, unsigned int /*flags*/) {
  *p = emu::allocate(bytes, emu::memory::managed);
  return *p == nullptr ? cudaErrorMemoryAllocation : cudaSuccess;
}
cudaError_t CUDARTAPI cudaMallocAsync(void** p, size_t bytes, cudaStream_t stream) {
  if (auto* s = emu::state_of(stream); s != nullptr && s->capture != nullptr)
    emu::fail("cudaMallocAsync while the stream is captured (the emulator records no memory nodes)");
  return cudaMalloc(p, bytes);
}
cudaError_t CUDARTAPI cudaFree(void* p) { return emu::release(p); }
cudaError_t CUDARTAPI cudaFreeAsync(void* p, cudaStream_t stream) {
  if (auto* s = emu::state_of(stream); s != nullptr && s->capture != nullptr)
    emu::fail("cudaFreeAsync while the stream is captured (the emulator records no memory nodes)");
  return emu::release(p);
}

cudaError_t CUDARTAPI cudaPointerGetAttributes(struct cudaPointerAttributes* attributes, const void* p) {
  *attributes = cudaPointerAttributes{};
  const emu::allocation* a = emu::find_allocation(p, 0);
  attributes->type = a == nullptr ? cudaMemoryTypeUnregistered
                                  : (a->kind == emu::memory::managed ? cudaMemoryTypeManaged : cudaMemoryTypeDevice);
  attributes->device = 0;
  attributes->devicePointer = a == nullptr ? nullptr : const_cast<void*>(p);
  attributes->hostPointer = a == nullptr || a->kind == emu::memory::managed ? const_cast<void*>(p) : nullptr;
  return cudaSuccess;
}

}  // extern "C"

namespace lmrl_cuda_emulator {
namespace {

// The source's and the destination's extents in the memory the copy's kind names.
void check_copy(void* dst, std::size_t dst_bytes, const void* src, std::size_t src_bytes, cudaMemcpyKind kind,
                const char* call) {
  const std::string who(call);
  const bool from_device = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  const bool to_device = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  if (kind != cudaMemcpyHostToDevice && kind != cudaMemcpyDeviceToHost && kind != cudaMemcpyDeviceToDevice)
    fail(who + ": a copy kind the emulator does not check (cudaMemcpyDefault or host to host)");
  if (from_device)
    require_device(src, src_bytes, who + " (source)");
  else
    require_host_range(src, src_bytes, who + " (source)");
  if (to_device)
    require_device(dst, dst_bytes, who + " (destination)");
  else
    require_host_range(dst, dst_bytes, who + " (destination)");
}

void require_not_capturing(cudaStream_t stream, const char* call) {
  if (auto* s = state_of(stream); s != nullptr && s->capture != nullptr)
    fail(std::string(call) + " on a stream that is being captured (cudaErrorStreamCaptureUnsupported)");
}

}  // namespace
}  // namespace lmrl_cuda_emulator

extern "C" {

cudaError_t CUDARTAPI cudaMemcpy(void* dst, const void* src, size_t bytes, enum cudaMemcpyKind kind) {
  emu::check_copy(dst, bytes, src, bytes, kind, "cudaMemcpy");
  emu::submit(nullptr, [=] { std::memmove(dst, src, bytes); });
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaMemcpyAsync(void* dst, const void* src, size_t bytes, enum cudaMemcpyKind kind,
                                      cudaStream_t stream) {
  emu::check_copy(dst, bytes, src, bytes, kind, "cudaMemcpyAsync");
  emu::submit(stream, [=] { std::memmove(dst, src, bytes); });
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width,
                                        size_t height, enum cudaMemcpyKind kind, cudaStream_t stream) {
  if (width > dpitch || width > spitch) return cudaErrorInvalidPitchValue;
  if (height == 0 || width == 0) return cudaSuccess;
  emu::check_copy(dst, dpitch * (height - 1) + width, src, spitch * (height - 1) + width, kind, "cudaMemcpy2DAsync");
  emu::submit(stream, [=] {
    for (std::size_t r = 0; r < height; ++r)
      std::memmove(static_cast<char*>(dst) + r * dpitch, static_cast<const char*>(src) + r * spitch, width);
  });
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t stream) {
  emu::require_device(p, bytes, "cudaMemsetAsync");
  emu::submit(stream, [=] { std::memset(p, value, bytes); });
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaMemset(void* p, int value, size_t bytes) { return cudaMemsetAsync(p, value, bytes, nullptr); }

cudaError_t CUDARTAPI cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int flags) {
  auto* s = new emu::stream_state{flags, nullptr};
  emu::streams().insert(s);
  *stream = reinterpret_cast<cudaStream_t>(s);
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaStreamCreate(cudaStream_t* stream) { return cudaStreamCreateWithFlags(stream, 0); }
cudaError_t CUDARTAPI cudaStreamDestroy(cudaStream_t stream) {
  auto* s = emu::state_of(stream);
  if (s == nullptr) return cudaErrorInvalidResourceHandle;
  if (s->capture != nullptr) emu::fail("cudaStreamDestroy on a stream that is being captured");
  emu::streams().erase(s);
  delete s;
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaStreamSynchronize(cudaStream_t stream) {
  emu::require_not_capturing(stream, "cudaStreamSynchronize");
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaStreamBeginCapture(cudaStream_t stream, enum cudaStreamCaptureMode /*mode*/) {
  auto* s = emu::state_of(stream);
  if (s == nullptr) emu::fail("cudaStreamBeginCapture on the legacy stream");
  if (s->capture != nullptr) emu::fail("cudaStreamBeginCapture on a stream already being captured");
  s->capture = new std::vector<std::function<void()>>();
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph) {
  auto* s = emu::state_of(stream);
  if (s == nullptr || s->capture == nullptr) emu::fail("cudaStreamEndCapture on a stream not being captured");
  auto* g = new emu::graph{std::move(*s->capture)};
  delete s->capture;
  s->capture = nullptr;
  *graph = reinterpret_cast<cudaGraph_t>(g);
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long /*flags*/) {
  return emu::make_handle<emu::graph>(exec, *reinterpret_cast<emu::graph*>(graph));
}
cudaError_t CUDARTAPI cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
  const auto* g = reinterpret_cast<const emu::graph*>(exec);
  emu::submit(stream, [g] {
    for (const auto& work : g->work) work();
  });
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaGraphDestroy(cudaGraph_t graph) { return emu::free_handle<emu::graph>(graph); }
cudaError_t CUDARTAPI cudaGraphExecDestroy(cudaGraphExec_t exec) { return emu::free_handle<emu::graph>(exec); }

cudaError_t CUDARTAPI cudaFuncSetAttribute(const void* kernel, enum cudaFuncAttribute attribute, int value) {
  if (attribute == cudaFuncAttributeMaxDynamicSharedMemorySize) {
    if (value > (163 << 10)) return cudaErrorInvalidValue;
    emu::set_max_dynamic_shared(kernel, value);
  }
  return cudaSuccess;
}

// Events keep the host time at which the work before them finished (everything runs at once here).
struct emulated_event {
  std::chrono::steady_clock::time_point at{};
};
cudaError_t CUDARTAPI cudaEventCreate(cudaEvent_t* event) { return emu::make_handle<emulated_event>(event); }
cudaError_t CUDARTAPI cudaEventDestroy(cudaEvent_t event) { return emu::free_handle<emulated_event>(event); }
cudaError_t CUDARTAPI cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  auto* e = reinterpret_cast<emulated_event*>(event);
  emu::submit(stream, [e] { e->at = std::chrono::steady_clock::now(); });
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
cudaError_t CUDARTAPI cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  const auto* a = reinterpret_cast<emulated_event*>(start);
  const auto* b = reinterpret_cast<emulated_event*>(end);
  *ms = std::chrono::duration<float, std::milli>(b->at - a->at).count();
  return cudaSuccess;
}

}  // extern "C"

// ===============================================================================================================
// cuBLAS: GemmEx in double (Eigen's product), the handle's stream and workspace kept; cuBLASLt: no algorithm
// for anything.

namespace {

struct emulated_blas {
  cudaStream_t stream = nullptr;
};

float tf32(float x) {  // the tensor cores' input rounding: 10 mantissa bits, to nearest even
  auto bits = std::bit_cast<std::uint32_t>(x);
  if ((bits & 0x7f800000u) == 0x7f800000u) return x;
  bits += 0xfffu + ((bits >> 13) & 1u);
  return std::bit_cast<float>(bits & 0xffffe000u);
}

float load(const void* p, cudaDataType type, std::size_t i) {
  switch (type) {
    case CUDA_R_32F: return static_cast<const float*>(p)[i];
    case CUDA_R_16BF: return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
    default: emu::fail("cublasGemmEx: an operand type the emulator does not know");
  }
}

std::size_t element_bytes(cudaDataType type) { return type == CUDA_R_32F ? 4 : 2; }

}  // namespace

extern "C" {

cublasStatus_t CUBLASWINAPI cublasCreate_v2(cublasHandle_t* handle) {
  return emu::make_blas_handle<emulated_blas>(handle);
}
cublasStatus_t CUBLASWINAPI cublasDestroy_v2(cublasHandle_t handle) {
  return emu::free_blas_handle<emulated_blas>(handle);
}
cublasStatus_t CUBLASWINAPI cublasSetStream_v2(cublasHandle_t handle, cudaStream_t stream) {
  reinterpret_cast<emulated_blas*>(handle)->stream = stream;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t CUBLASWINAPI cublasSetWorkspace_v2(cublasHandle_t, void* workspace, size_t bytes) {
  emu::require_device(workspace, bytes, "cublasSetWorkspace");
  return CUBLAS_STATUS_SUCCESS;
}
const char* CUBLASWINAPI cublasGetStatusName(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "CUBLAS_STATUS (emulated)";
  }
}
const char* CUBLASWINAPI cublasGetStatusString(cublasStatus_t status) { return cublasGetStatusName(status); }

// Column-major C[m x n] = alpha op(A) op(B) + beta C, as cuBLAS defines it (C is not read when beta is 0).
cublasStatus_t CUBLASWINAPI cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb,
                                         int m, int n, int k, const void* alpha, const void* A, cudaDataType Atype,
                                         int lda, const void* B, cudaDataType Btype, int ldb, const void* beta,
                                         void* C, cudaDataType Ctype, int ldc, cublasComputeType_t compute,
                                         cublasGemmAlgo_t) {
  if (m < 0 || n < 0 || k < 0) return CUBLAS_STATUS_INVALID_VALUE;
  if (compute != CUBLAS_COMPUTE_32F && compute != CUBLAS_COMPUTE_32F_FAST_TF32) return CUBLAS_STATUS_NOT_SUPPORTED;
  const bool ta = transa != CUBLAS_OP_N, tb = transb != CUBLAS_OP_N;
  const int a_rows = ta ? k : m, a_cols = ta ? m : k, b_rows = tb ? n : k, b_cols = tb ? k : n;
  if (lda < std::max(1, a_rows) || ldb < std::max(1, b_rows) || ldc < std::max(1, m))
    return CUBLAS_STATUS_INVALID_VALUE;
  if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
  const auto extent = [](int rows, int cols, int ld, cudaDataType t) {
    return cols == 0 || rows == 0 ? 0 : (static_cast<std::size_t>(ld) * (cols - 1) + rows) * element_bytes(t);
  };
  emu::require_device(A, extent(a_rows, a_cols, lda, Atype), "cublasGemmEx (A)");
  emu::require_device(B, extent(b_rows, b_cols, ldb, Btype), "cublasGemmEx (B)");
  emu::require_device(C, extent(m, n, ldc, Ctype), "cublasGemmEx (C)");
  const float a = *static_cast<const float*>(alpha), b = *static_cast<const float*>(beta);
  const bool round_tf32 = compute == CUBLAS_COMPUTE_32F_FAST_TF32;
  emu::submit(reinterpret_cast<emulated_blas*>(handle)->stream, [=] {
    // op(A) and op(B) in double (TF32-rounded first where asked), one Eigen product, then alpha and beta.
    using matrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic>;  // column-major, as cuBLAS's
    const auto operand = [&](const void* p, cudaDataType type, int ld, bool transposed, int rows, int cols) {
      matrix out(rows, cols);
      for (int c = 0; c < cols; ++c)
        for (int r = 0; r < rows; ++r) {
          const std::size_t at =
              transposed ? static_cast<std::size_t>(r) * ld + c : static_cast<std::size_t>(c) * ld + r;
          const float v = load(p, type, at);
          out(r, c) = round_tf32 ? tf32(v) : v;
        }
      return out;
    };
    const matrix product = operand(A, Atype, lda, ta, m, k) * operand(B, Btype, ldb, tb, k, n);
    for (int j = 0; j < n; ++j)
      for (int i = 0; i < m; ++i) {
        const std::size_t at = static_cast<std::size_t>(j) * ldc + i;
        double out = a * product(i, j);
        if (b != 0.0f) out += static_cast<double>(b) * load(C, Ctype, at);
        if (Ctype == CUDA_R_32F)
          static_cast<float*>(C)[at] = static_cast<float>(out);
        else
          static_cast<__nv_bfloat16*>(C)[at] = __float2bfloat16_rn(static_cast<float>(out));
      }
  });
  return CUBLAS_STATUS_SUCCESS;
}

// cuBLASLt: descriptors are accepted and kept nowhere; no algorithm is ever found.
size_t CUBLASWINAPI cublasLtGetVersion(void) { return 120000; }  // before block-scaled FP8 (12.9)
cublasStatus_t CUBLASWINAPI cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* desc, cublasComputeType_t, cudaDataType_t) {
  return emu::make_blas_handle<emu::lt_descriptor>(desc);
}
cublasStatus_t CUBLASWINAPI cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t desc) {
  return emu::free_blas_handle<emu::lt_descriptor>(desc);
}
cublasStatus_t CUBLASWINAPI cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t, cublasLtMatmulDescAttributes_t,
                                                           const void*, size_t) {
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t CUBLASWINAPI cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* layout, cudaDataType, uint64_t,
                                                       uint64_t, int64_t) {
  return emu::make_blas_handle<emu::lt_descriptor>(layout);
}
cublasStatus_t CUBLASWINAPI cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t layout) {
  return emu::free_blas_handle<emu::lt_descriptor>(layout);
}
cublasStatus_t CUBLASWINAPI cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* preference) {
  return emu::make_blas_handle<emu::lt_descriptor>(preference);
}
cublasStatus_t CUBLASWINAPI cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t preference) {
  return emu::free_blas_handle<emu::lt_descriptor>(preference);
}
cublasStatus_t CUBLASWINAPI cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t,
                                                                 cublasLtMatmulPreferenceAttributes_t, const void*,
                                                                 size_t) {
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t CUBLASWINAPI cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t, cublasLtMatmulDesc_t,
                                                           cublasLtMatrixLayout_t, cublasLtMatrixLayout_t,
                                                           cublasLtMatrixLayout_t, cublasLtMatrixLayout_t,
                                                           cublasLtMatmulPreference_t, int,
                                                           cublasLtMatmulHeuristicResult_t*, int* returned) {
  *returned = 0;
  return CUBLAS_STATUS_NOT_SUPPORTED;
}
cublasStatus_t CUBLASWINAPI cublasLtMatmul(cublasLtHandle_t, cublasLtMatmulDesc_t, const void*, const void*,
                                           cublasLtMatrixLayout_t, const void*, cublasLtMatrixLayout_t, const void*,
                                           const void*, cublasLtMatrixLayout_t, void*, cublasLtMatrixLayout_t,
                                           const cublasLtMatmulAlgo_t*, void*, size_t, cudaStream_t) {
  emu::fail("cublasLtMatmul: the emulator has no cuBLASLt (its heuristic offers no algorithm)");
}

}  // extern "C"
