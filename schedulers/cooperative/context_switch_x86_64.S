// User-space context switch for x86-64 (System V ABI). See fiber.cc.
//
// A suspended context is the stack pointer saved by taskrt_switch_context;
// its stack holds, from that pointer up: MXCSR and the x87 control word
// (8 bytes), r15, r14, r13, r12, rbx, rbp, and the return address. Those
// are exactly the registers the ABI asks a callee to preserve.

#if defined(__x86_64__)
        .text

// void taskrt_switch_context(void** save_sp, void* load_sp)
        .globl  taskrt_switch_context
        .type   taskrt_switch_context, @function
        .p2align 4
taskrt_switch_context:
        .cfi_startproc
        pushq   %rbp
        pushq   %rbx
        pushq   %r12
        pushq   %r13
        pushq   %r14
        pushq   %r15
        subq    $8, %rsp
        stmxcsr (%rsp)
        fnstcw  4(%rsp)
        movq    %rsp, (%rdi)
        movq    %rsi, %rsp
        ldmxcsr (%rsp)
        fldcw   4(%rsp)
        addq    $8, %rsp
        popq    %r15
        popq    %r14
        popq    %r13
        popq    %r12
        popq    %rbx
        popq    %rbp
        ret
        .cfi_endproc
        .size   taskrt_switch_context, .-taskrt_switch_context

// First code run on a new stack, entered by the `ret` above with r12 = the
// start function and r13 = its argument (see MakeContext in fiber.cc). The
// start function never returns: a finished fiber switches away for good.
        .globl  taskrt_context_trampoline
        .hidden taskrt_context_trampoline
        .type   taskrt_context_trampoline, @function
        .p2align 4
taskrt_context_trampoline:
        .cfi_startproc
        .cfi_undefined rip      // the outermost frame: unwinders stop here
        movq    %r13, %rdi
        callq   *%r12
        ud2
        .cfi_endproc
        .size   taskrt_context_trampoline, .-taskrt_context_trampoline

#endif  // __x86_64__

        .section .note.GNU-stack,"",@progbits
