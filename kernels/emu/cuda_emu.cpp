// Runtime of the CUDA emulator (see cuda_emu.h): fibers, barriers, warp exchange,
// and the launch entry point called from Rust (src/backend/emu/mod.rs).
//
// Scheduling: every thread of the block is a fiber in one of the states READY,
// AT_BARRIER (in __syncthreads), AT_WARP (in a warp operation) or DONE. The
// scheduler runs every READY fiber until it blocks; then it releases each warp whose
// live lanes all wait in a warp operation, and the whole block when every live
// thread waits at the barrier. No release possible and not all done = deadlock
// (divergent __syncthreads or warp operation): reported as a launch error.
#include "cuda_emu.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <new>
#include <vector>

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

namespace emu {
thread_local uint3 tid_, bid_, bdim_, gdim_;
thread_local unsigned int lin_;

namespace {
enum State { READY, AT_BARRIER, AT_WARP, DONE };
constexpr size_t kStack = 256 * 1024;  // per fiber, plus one guard page

struct Fiber {
    void* sp = nullptr;  // saved stack pointer (x86_64 switch)
#if !defined(__x86_64__)
    ucontext_t uc;
#endif
    char* stack = nullptr;
    State state = DONE;
    uint3 tid{0, 0, 0};
    unsigned lin = 0;
};

struct Launch {
    void (*invoker)(void**) = nullptr;
    void** args = nullptr;
    std::vector<Fiber> fibers;
    size_t nthreads = 0;
    Fiber* cur = nullptr;
    void* sched_sp = nullptr;
#if !defined(__x86_64__)
    ucontext_t sched_uc;
#endif
    std::vector<unsigned long long> slots;  // warp exchange, one per thread
    std::vector<unsigned char> smem;
    char* stacks = nullptr;
    size_t nstacks = 0;
    const char* error = nullptr;
};
thread_local Launch* L = nullptr;

#if defined(__x86_64__)
// void emu_switch(void** save_sp, void* load_sp): saves the callee-saved registers
// on the current stack, stores rsp, switches to load_sp and restores from there.
extern "C" void emu_switch(void** save_sp, void* load_sp);
__asm__(
    ".text\n"
    ".globl emu_switch\n"
    ".type emu_switch,@function\n"
    "emu_switch:\n"
    "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
    "  subq $8, %rsp\n  stmxcsr (%rsp)\n  fnstcw 4(%rsp)\n"
    "  movq %rsp, (%rdi)\n"
    "  movq %rsi, %rsp\n"
    "  ldmxcsr (%rsp)\n  fldcw 4(%rsp)\n  addq $8, %rsp\n"
    "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
    "  ret\n"
    ".size emu_switch, .-emu_switch\n");
#endif

void to_scheduler() {
    Launch* l = L;
#if defined(__x86_64__)
    emu_switch(&l->cur->sp, l->sched_sp);
#else
    swapcontext(&l->cur->uc, &l->sched_uc);
#endif
}

extern "C" void fiber_main() {
    Launch* l = L;
    l->invoker(l->args);
    l->cur->state = DONE;
    to_scheduler();
    std::abort();  // never resumed
}

void block_wait(State s) {
    L->cur->state = s;
    to_scheduler();
}

void ensure_stacks(Launch* l, size_t n) {
    if (l->nstacks >= n) return;
    if (l->stacks) munmap(l->stacks, l->nstacks * (kStack + 4096));
    size_t bytes = n * (kStack + 4096);
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) { l->stacks = nullptr; l->nstacks = 0; return; }
    l->stacks = static_cast<char*>(p);
    l->nstacks = n;
    for (size_t i = 0; i < n; ++i) mprotect(l->stacks + i * (kStack + 4096), 4096, PROT_NONE);
}

void start_fiber(Launch* l, Fiber& f) {
    char* top = f.stack + kStack;  // 16-byte aligned (page aligned)
#if defined(__x86_64__)
    void** sp = reinterpret_cast<void**>(top);
    *--sp = nullptr;                                        // fake return address of fiber_main
    *--sp = reinterpret_cast<void*>(&fiber_main);           // popped by `ret`
    for (int i = 0; i < 6; ++i) *--sp = nullptr;            // rbp rbx r12 r13 r14 r15
    --sp;                                                   // mxcsr + x87 control word
    unsigned csr[2];
    unsigned short cw;
    __asm__ volatile("stmxcsr %0" : "=m"(csr[0]));
    __asm__ volatile("fnstcw %0" : "=m"(cw));
    csr[1] = cw;
    std::memcpy(sp, csr, 8);
    f.sp = sp;
#else
    getcontext(&f.uc);
    f.uc.uc_stack.ss_sp = f.stack;
    f.uc.uc_stack.ss_size = kStack;
    f.uc.uc_link = nullptr;
    makecontext(&f.uc, (void (*)())fiber_main, 0);
#endif
    (void)l;
    f.state = READY;
}

void resume(Launch* l, Fiber& f) {
    l->cur = &f;
    tid_ = f.tid;
    lin_ = f.lin;
#if defined(__x86_64__)
    emu_switch(&l->sched_sp, f.sp);
#else
    swapcontext(&l->sched_uc, &f.uc);
#endif
}

// Runs one block to completion; returns an error text or nullptr.
const char* run_block(Launch* l) {
    const size_t n = l->nthreads;
    for (size_t i = 0; i < n; ++i) start_fiber(l, l->fibers[i]);
    // Uninitialised shared memory reads NaN (0xff bytes), as a bug should show.
    if (!l->smem.empty()) std::memset(l->smem.data(), 0xff, l->smem.size());
    for (;;) {
        for (size_t i = 0; i < n; ++i)
            if (l->fibers[i].state == READY) resume(l, l->fibers[i]);
        if (l->error) return l->error;
        bool released = false, all_done = true, all_barrier = true;
        for (size_t w = 0; w < n; w += 32) {
            size_t e = w + 32 < n ? w + 32 : n;
            bool any_live = false, warp_ready = true;
            for (size_t i = w; i < e; ++i) {
                State s = l->fibers[i].state;
                if (s == DONE) continue;
                any_live = true;
                all_done = false;
                if (s != AT_WARP) warp_ready = false;
                if (s != AT_BARRIER) all_barrier = false;
            }
            if (any_live && warp_ready) {
                for (size_t i = w; i < e; ++i)
                    if (l->fibers[i].state == AT_WARP) l->fibers[i].state = READY;
                released = true;
            }
        }
        if (all_done) return nullptr;
        if (!released && all_barrier) {
            for (size_t i = 0; i < n; ++i)
                if (l->fibers[i].state == AT_BARRIER) l->fibers[i].state = READY;
            released = true;
        }
        if (!released)
            return "deadlock: threads wait at different barriers (divergent __syncthreads "
                   "or warp operation)";
    }
}
}  // namespace

void syncthreads() { block_wait(AT_BARRIER); }
void syncwarp() { block_wait(AT_WARP); }

unsigned long long exchange(unsigned long long v, int src) {
    Launch* l = L;
    unsigned me = l->cur->lin;
    l->slots[me] = v;
    block_wait(AT_WARP);
    unsigned base = me & ~31u;
    unsigned s = base + (unsigned)src;
    unsigned long long r = (src >= 0 && src < 32 && s < l->nthreads) ? l->slots[s] : v;
    block_wait(AT_WARP);  // nobody overwrites a slot before every lane read it
    return r;
}

void* dyn_smem() { return L->smem.empty() ? nullptr : L->smem.data(); }

void trap(const char* what) {
    L->error = what;
    L->cur->state = DONE;
    to_scheduler();
    std::abort();
}
}  // namespace emu

// Launches `invoker` (an emu_invoke_<kernel>) over grid x block threads with
// `shared_bytes` of dynamic shared memory; `args` as cuLaunchKernel's kernelParams.
// Returns 0 on success, else writes a message into err (size err_len) and returns 1.
extern "C" int emu_launch(void (*invoker)(void**), const unsigned* grid, const unsigned* block,
                          unsigned shared_bytes, void** args, char* err, size_t err_len) {
    using namespace emu;
    static thread_local Launch* state = nullptr;
    if (!state) state = new Launch();
    Launch* l = state;
    const unsigned long long nthreads = (unsigned long long)block[0] * block[1] * block[2];
    if (nthreads == 0 || nthreads > 1024 || grid[0] == 0 || grid[1] == 0 || grid[2] == 0 ||
        grid[1] > 65535 || grid[2] > 65535 || block[2] > 64) {
        std::snprintf(err, err_len, "invalid launch geometry grid (%u,%u,%u) block (%u,%u,%u)",
                      grid[0], grid[1], grid[2], block[0], block[1], block[2]);
        return 1;
    }
    if (shared_bytes > 227u * 1024u) {
        std::snprintf(err, err_len, "%u bytes of dynamic shared memory (> 227 KiB)", shared_bytes);
        return 1;
    }
    ensure_stacks(l, nthreads);
    if (!l->stacks) {
        std::snprintf(err, err_len, "cannot map fiber stacks");
        return 1;
    }
    l->invoker = invoker;
    l->args = args;
    l->nthreads = nthreads;
    l->fibers.assign(nthreads, Fiber{});
    l->slots.assign(nthreads, 0);
    l->smem.assign(shared_bytes, 0);
    l->error = nullptr;
    for (unsigned z = 0, i = 0; z < block[2]; ++z)
        for (unsigned y = 0; y < block[1]; ++y)
            for (unsigned x = 0; x < block[0]; ++x, ++i) {
                Fiber& f = l->fibers[i];
                f.stack = l->stacks + i * (kStack + 4096) + 4096;
                f.tid = uint3{x, y, z};
                f.lin = i;
            }
    Launch* saved = L;
    L = l;
    bdim_ = uint3{block[0], block[1], block[2]};
    gdim_ = uint3{grid[0], grid[1], grid[2]};
    const char* e = nullptr;
    for (unsigned bz = 0; bz < grid[2] && !e; ++bz)
        for (unsigned by = 0; by < grid[1] && !e; ++by)
            for (unsigned bx = 0; bx < grid[0] && !e; ++bx) {
                bid_ = uint3{bx, by, bz};
                e = run_block(l);
            }
    L = saved;
    if (e) {
        std::snprintf(err, err_len, "%s", e);
        return 1;
    }
    return 0;
}

// Layout of params.cuh as the C++ compiler sees it, for the Rust test
// backend::gpu::tests::params_layout_matches_header (same order there).
#include "params.cuh"
#include <cstddef>
extern "C" size_t emu_params_layout(unsigned* out, size_t cap) {
    const unsigned v[] = {
        (unsigned)sizeof(Seg),         (unsigned)offsetof(Seg, len),
        (unsigned)sizeof(ConvShape),   (unsigned)offsetof(ConvShape, o),
        (unsigned)offsetof(ConvShape, ow),
        (unsigned)sizeof(LinearShape), (unsigned)offsetof(LinearShape, k),
        (unsigned)sizeof(NormShape),   (unsigned)offsetof(NormShape, eps),
        (unsigned)sizeof(PoolShape),   (unsigned)offsetof(PoolShape, w),
        (unsigned)offsetof(PoolShape, k), (unsigned)offsetof(PoolShape, stride),
        (unsigned)sizeof(ImgShape),    (unsigned)offsetof(ImgShape, w),
        (unsigned)sizeof(AffineParam), (unsigned)offsetof(AffineParam, a11),
        (unsigned)sizeof(IntParam),    (unsigned)offsetof(IntParam, b),
        (unsigned)sizeof(MatchTensor), (unsigned)offsetof(MatchTensor, rows),
        (unsigned)offsetof(MatchTensor, is_vector),
        (unsigned)sizeof(SgdParams),   (unsigned)offsetof(SgdParams, weight_decay),
    };
    const size_t n = sizeof(v) / sizeof(v[0]);
    for (size_t i = 0; i < n && i < cap; ++i) out[i] = v[i];
    return n;
}
