// Host emulation of the CUDA built-ins gvae's kernels use, so that each .cu source compiles as C++17
// with g++ and its kernels run on the CPU (tests only; see emulator.py for how it is built and launched).
//
// The blocks of a grid run one after another; the threads of a block run as fibers on one OS thread,
// switched cooperatively (x86-64, a hand-written switch: swapcontext's signal-mask system call would
// cost more than the kernels), in index order in even blocks and in reverse in odd ones, so that a race
// one order hides the other shows. A thread runs until it reaches __syncthreads, __syncwarp or a
// shuffle, which are real barriers: it waits there until every live thread of its block (warp) has
// arrived. A barrier that can never complete (threads wait at another one) is a deadlock and an error,
// as is a warp-synchronous op with a full mask once a lane of the warp has exited. Shared memory is
// filled with 0xff bytes (NaN in float and double) before each block, so reads of what no thread wrote
// show. Not emulated: preemption (a thread that spins waiting for another never yields) and a stack
// overflow other than as a crash (each stack has a guard page).
#ifndef GVAE_CUDA_HOST_H
#define GVAE_CUDA_HOST_H

// C headers and <tuple> only: the rest of the standard library would add a third to each compile.
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include <tuple>
#include <type_traits>
#include <utility>

struct uint3 { unsigned x, y, z; };
struct dim3 { unsigned x, y, z; };

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
// Static shared arrays live in one section, refilled before each block (emulator.py rewrites
// `extern __shared__ T name[];` to the dynamic buffer first).
#define __shared__ static __attribute__((section("gvae_shared")))

extern "C" char __start_gvae_shared[] __attribute__((weak, visibility("hidden")));
extern "C" char __stop_gvae_shared[] __attribute__((weak, visibility("hidden")));

namespace gvae_emu {

constexpr int MAX_THREADS = 1024, MAX_WARPS = MAX_THREADS / 32;
constexpr size_t STACK_BYTES = 64 * 1024;     // per thread, with a guard page below it
constexpr size_t PAGE = 4096;
constexpr size_t MAX_DYNAMIC_SHARED = 48 * 1024;  // what a launch gets without opting in

enum State { READY, WAITING, DONE };
enum Kind { SYNCTHREADS, SYNCWARP, SHUFFLE };

struct Barrier {
    int arrived = 0;
    unsigned gen = 0;
    Kind kind = SYNCTHREADS;
};

struct Fiber {
    void* sp = nullptr;
    uint3 tid{0, 0, 0};
    int warp = 0, lane = 0;
    State state = READY;
    Barrier* wait_on = nullptr;
    unsigned wait_gen = 0;
};

struct Emulator {
    dim3 grid{1, 1, 1}, block{1, 1, 1};
    uint3 bid{0, 0, 0};
    Fiber* cur = nullptr;
    void* sched_sp = nullptr;
    void (*body)(void*) = nullptr;
    void* body_arg = nullptr;
    Fiber fibers[MAX_THREADS];
    int threads = 0, live = 0;  // in the block, and of those not yet exited
    int warp_live[MAX_WARPS], warp_size[MAX_WARPS];
    Barrier block_bar;
    Barrier warp_bar[MAX_WARPS];
    uint64_t exchange[MAX_WARPS * 64];  // shuffles: per warp, two generations (by parity) of 32 lanes
    alignas(16) unsigned char dynamic_shared[MAX_DYNAMIC_SHARED];
    char* stacks = nullptr;  // the fiber stacks of the launch under way (run_grid's ThreadStacks)
    char error[512] = "";
    pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;  // one launch at a time: the emulator's state is global
};

inline Emulator& emu() {
    static Emulator e;
    return e;
}

// Saves the callee-saved registers and the stack pointer into *save, then resumes the fiber whose
// stack pointer is `load` (as saved by an earlier switch, or prepared by start_fiber).
extern "C" void gvae_emu_switch(void** save, void* load);
asm(R"(
    .text
    .p2align 4
    .hidden gvae_emu_switch
    .globl gvae_emu_switch
    .type gvae_emu_switch, @function
gvae_emu_switch:
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
    .size gvae_emu_switch, .-gvae_emu_switch
)");

inline void fail(const char* what, const char* detail = "") {
    Emulator& e = emu();
    if (e.error[0] == 0) {
        const Fiber* f = e.cur;
        char where[160];
        if (f)
            snprintf(where, sizeof where, " (block (%u, %u, %u), thread (%u, %u, %u))", e.bid.x, e.bid.y, e.bid.z,
                     f->tid.x, f->tid.y, f->tid.z);
        else
            snprintf(where, sizeof where, " (block (%u, %u, %u))", e.bid.x, e.bid.y, e.bid.z);
        snprintf(e.error, sizeof e.error, "%s%s%s", what, detail, where);
    }
}

// Back to the scheduler; returns when the scheduler resumes this fiber.
inline void yield() {
    Emulator& e = emu();
    gvae_emu_switch(&e.cur->sp, e.sched_sp);
}

// Arrival at `bar`, which completes when `expected` threads have arrived; returns the generation.
inline unsigned arrive(Barrier& bar, int expected, Kind kind) {
    if (bar.arrived == 0) {
        bar.kind = kind;
    } else if (bar.kind != kind) {
        fail("threads of one warp reached different warp-synchronous operations (__syncwarp / shuffle)");
    }
    const unsigned gen = bar.gen;
    if (++bar.arrived == expected) {
        bar.arrived = 0;
        ++bar.gen;
        return gen;
    }
    Fiber* f = emu().cur;
    f->state = WAITING;
    f->wait_on = &bar;
    f->wait_gen = gen;
    yield();
    return gen;
}

inline void check_full_warp(unsigned mask, const char* what) {
    Emulator& e = emu();
    const Fiber* f = e.cur;
    const int size = e.warp_size[f->warp];
    if (mask != 0xffffffffu) fail(what, ": only the full mask is emulated");
    if (size != 32) fail(what, " with a full mask in a partial warp (blockDim not a multiple of 32)");
    if (e.warp_live[f->warp] != size) fail(what, " with a full mask after a lane of the warp exited");
}

inline void syncwarp(unsigned mask) {
    Emulator& e = emu();
    check_full_warp(mask, "__syncwarp");
    arrive(e.warp_bar[e.cur->warp], e.warp_live[e.cur->warp], SYNCWARP);
}

// The value of lane src(this lane) after every lane of the warp has offered its own.
template <typename T, typename Src>
inline T shuffle(unsigned mask, T v, Src src_of, const char* what) {
    static_assert(sizeof(T) <= sizeof(uint64_t), "shuffle of a value wider than 8 bytes");
    Emulator& e = emu();
    check_full_warp(mask, what);
    Fiber* f = e.cur;
    const int w = f->warp;
    // the parity of the generation keeps two consecutive exchanges of one warp apart
    uint64_t* slots = &e.exchange[(size_t)w * 64 + (e.warp_bar[w].gen & 1u) * 32];
    memcpy(&slots[f->lane], &v, sizeof(T));
    arrive(e.warp_bar[w], e.warp_live[w], SHUFFLE);
    const int src = src_of(f->lane);
    if (src < 0 || src >= 32) fail(what, ": source lane outside the warp");
    T out;
    memcpy(&out, &slots[src], sizeof(T));
    return out;
}

template <typename T>
inline T shfl_xor(unsigned mask, T v, int lane_mask) {
    return shuffle(mask, v, [lane_mask](int lane) { return lane ^ lane_mask; }, "__shfl_xor_sync");
}

// __shfl_sync with width 32: every lane names its source lane (taken modulo 32, as CUDA does).
template <typename T>
inline T shfl(unsigned mask, T v, int src_lane) {
    return shuffle(mask, v, [src_lane](int) { return src_lane & 31; }, "__shfl_sync");
}

[[noreturn]] inline void trampoline() {
    Emulator& e = emu();
    e.body(e.body_arg);
    Fiber* f = e.cur;
    f->state = DONE;
    --e.live;
    --e.warp_live[f->warp];
    // a __syncthreads that waited only for this thread completes; a warp-synchronous op cannot
    if (e.block_bar.arrived > 0 && e.block_bar.arrived == e.live) {
        e.block_bar.arrived = 0;
        ++e.block_bar.gen;
    }
    if (e.warp_bar[f->warp].arrived > 0)
        fail("a lane exited while others of its warp wait at a warp-synchronous operation");
    gvae_emu_switch(&f->sp, e.sched_sp);
    __builtin_unreachable();
}

// Lays out a fresh stack so that the first switch to it "returns" into the trampoline.
inline void start_fiber(Fiber& f, char* stack_top) {
    void** sp = (void**)((uintptr_t)stack_top & ~(uintptr_t)15);
    *--sp = nullptr;                     // keeps the trampoline's entry aligned as after a call
    *--sp = (void*)&trampoline;          // the switch's `ret` lands here
    for (int r = 0; r < 6; ++r) *--sp = nullptr;  // rbp, rbx, r12 - r15
    f.sp = sp;
}

// The stacks of one launch's threads, each with a guard page below it, mapped when the launch starts
// and unmapped when it ends: each guard page splits the mapping, so stacks kept mapped by every
// emulated library (one emulator each) would pile up tens of thousands of mappings in a test process,
// past the kernel's limit (vm.max_map_count), where the next mmap of anything fails.
struct ThreadStacks {
    char* base = nullptr;
    size_t bytes = 0;
    explicit ThreadStacks(long long threads) : bytes((size_t)threads * (STACK_BYTES + PAGE)) {
        void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) return;
        base = (char*)p;
        for (long long t = 0; t < threads; ++t) mprotect(base + t * (STACK_BYTES + PAGE), PAGE, PROT_NONE);
    }
    ~ThreadStacks() {
        if (base != nullptr) munmap(base, bytes);
    }
    ThreadStacks(const ThreadStacks&) = delete;
    ThreadStacks& operator=(const ThreadStacks&) = delete;
};

inline void describe_deadlock() {
    Emulator& e = emu();
    int at_block = 0, at_warp = 0;
    for (int t = 0; t < e.threads; ++t) {
        const Fiber& f = e.fibers[t];
        if (f.state != WAITING) continue;
        (f.wait_on == &e.block_bar ? at_block : at_warp) += 1;
    }
    char text[200];
    snprintf(text, sizeof text, "deadlock: %d threads wait at __syncthreads and %d at a warp-synchronous "
             "operation, %d live, none can go on", at_block, at_warp, e.live);
    e.cur = nullptr;
    fail(text);
}

inline void run_block() {
    Emulator& e = emu();
    const int nx = e.block.x, ny = e.block.y, n = nx * ny * e.block.z;
    const int warps = (n + 31) / 32;
    for (int w = 0; w < warps; ++w) {
        e.warp_live[w] = e.warp_size[w] = 32;
        e.warp_bar[w] = Barrier();
    }
    if (n % 32) e.warp_live[warps - 1] = e.warp_size[warps - 1] = n % 32;
    e.block_bar = Barrier();
    e.threads = e.live = n;
    for (int t = 0; t < n; ++t) {
        Fiber& f = e.fibers[t] = Fiber();
        f.tid = uint3{(unsigned)(t % nx), (unsigned)(t / nx % ny), (unsigned)(t / (nx * ny))};
        f.warp = t / 32;
        f.lane = t % 32;
        start_fiber(f, e.stacks + (size_t)(t + 1) * (STACK_BYTES + PAGE));
    }
    const bool reverse = (e.bid.x + e.bid.y + e.bid.z) & 1u;
    while (e.live > 0) {
        bool progress = false;
        for (int t = 0; t < n; ++t) {
            Fiber& f = e.fibers[reverse ? n - 1 - t : t];
            if (f.state == DONE || (f.state == WAITING && f.wait_on->gen == f.wait_gen)) continue;
            f.state = READY;
            e.cur = &f;
            gvae_emu_switch(&e.sched_sp, f.sp);
            progress = true;
            if (e.error[0]) return;
        }
        if (!progress) {
            describe_deadlock();
            return;
        }
    }
}

// Runs `body` as every thread of every block; returns 0, or 1 with the message in emu().error.
inline int run_grid(const long long* cfg, void (*body)(void*), void* arg) {
    Emulator& e = emu();
    e.error[0] = 0;
    e.cur = nullptr;
    e.bid = uint3{0, 0, 0};
    e.grid = dim3{(unsigned)cfg[0], (unsigned)cfg[1], (unsigned)cfg[2]};
    e.block = dim3{(unsigned)cfg[3], (unsigned)cfg[4], (unsigned)cfg[5]};
    const long long threads = cfg[3] * cfg[4] * cfg[5];
    if (threads < 1 || threads > MAX_THREADS || cfg[5] > 64) {
        fail("invalid block size (more than 1024 threads, or blockDim.z > 64)");
        return 1;
    }
    if (cfg[0] < 1 || cfg[1] < 1 || cfg[2] < 1 || cfg[1] > 65535 || cfg[2] > 65535 || cfg[0] > 2147483647LL) {
        fail("invalid grid size");
        return 1;
    }
    if (cfg[6] < 0 || (size_t)cfg[6] > MAX_DYNAMIC_SHARED) {
        fail("dynamic shared memory over 48 KiB (a launch needs an opt-in attribute for more)");
        return 1;
    }
    ThreadStacks stacks(threads);
    if (stacks.base == nullptr) {
        fail("cannot map the threads' stacks");
        return 1;
    }
    e.stacks = stacks.base;
    e.body = body;
    e.body_arg = arg;
    for (unsigned z = 0; z < e.grid.z; ++z)
        for (unsigned y = 0; y < e.grid.y; ++y)
            for (unsigned x = 0; x < e.grid.x; ++x) {
                e.bid = uint3{x, y, z};
                memset(e.dynamic_shared, 0xff, sizeof e.dynamic_shared);
                if (__start_gvae_shared != nullptr)
                    memset(__start_gvae_shared, 0xff, __stop_gvae_shared - __start_gvae_shared);
                run_block();
                if (e.error[0]) return 1;
            }
    return 0;
}

// One letter per C type of a kernel parameter; a pointer is 'p' followed by its pointee's letter.
template <typename T> struct Code;
template <> struct Code<float> { static constexpr char c = 'f'; };
template <> struct Code<double> { static constexpr char c = 'd'; };
template <> struct Code<int> { static constexpr char c = 'i'; };
template <> struct Code<long long> { static constexpr char c = 'q'; };
template <> struct Code<bool> { static constexpr char c = '?'; };

template <typename T> void append_code(char*& out) {
    if constexpr (std::is_pointer_v<T>) {
        *out++ = 'p';
        *out++ = Code<std::remove_cv_t<std::remove_pointer_t<T>>>::c;
    } else {
        *out++ = Code<std::remove_cv_t<T>>::c;
    }
    *out++ = ',';
}

// Writes "pf,pf,i,i" for bias_act_forward<float, A>(float*, const float*, int, int) into `out`, which
// holds at least 3 chars a parameter and one.
template <typename... A> const char* signature(void (*)(A...), char* out) {
    char* end = out;
    (append_code<A>(end), ...);
    end[end == out ? 0 : -1] = 0;  // the last comma
    return out;
}

template <typename... A, size_t... I>
std::tuple<std::decay_t<A>...> unpack(void** args, std::index_sequence<I...>) {
    return std::tuple<std::decay_t<A>...>(*static_cast<std::decay_t<A>*>(args[I])...);
}

// Launches kernel `k` with the argument values args[i] (each pointing to a value of the i-th
// parameter's type) and cfg = (grid x, y, z, block x, y, z, dynamic shared bytes).
template <typename... A> int launch(void (*k)(A...), const long long* cfg, void** args) {
    Emulator& e = emu();
    pthread_mutex_lock(&e.lock);
    auto values = unpack<A...>(args, std::index_sequence_for<A...>{});
    struct Call {
        void (*k)(A...);
        std::tuple<std::decay_t<A>...>* values;
    } call{k, &values};
    const int status = run_grid(cfg, [](void* p) {
        Call* c = static_cast<Call*>(p);
        std::apply(c->k, *c->values);
    }, &call);
    pthread_mutex_unlock(&e.lock);
    return status;
}

}  // namespace gvae_emu

#define threadIdx (gvae_emu::emu().cur->tid)
#define blockIdx (gvae_emu::emu().bid)
#define blockDim (gvae_emu::emu().block)
#define gridDim (gvae_emu::emu().grid)
#define GVAE_DYNAMIC_SHARED(T) (reinterpret_cast<T*>(gvae_emu::emu().dynamic_shared))

inline void __syncthreads() {
    gvae_emu::Emulator& e = gvae_emu::emu();
    gvae_emu::arrive(e.block_bar, e.live, gvae_emu::SYNCTHREADS);
}
inline void __syncwarp(unsigned mask = 0xffffffffu) { gvae_emu::syncwarp(mask); }
template <typename T> inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask) {
    return gvae_emu::shfl_xor(mask, v, lane_mask);
}
template <typename T> inline T __shfl_sync(unsigned mask, T v, int src_lane) {
    return gvae_emu::shfl(mask, v, src_lane);
}
// One OS thread runs every fiber: a plain read-modify-write is atomic.
inline double atomicAdd(double* p, double v) {
    const double old = *p;
    *p = v + old;
    return old;
}
inline float __int_as_float(int i) {
    float f;
    memcpy(&f, &i, sizeof f);
    return f;
}
inline double __longlong_as_double(long long i) {
    double d;
    memcpy(&d, &i, sizeof d);
    return d;
}
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }

#endif  // GVAE_CUDA_HOST_H
