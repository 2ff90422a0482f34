#ifndef TASKRT_CHANNELS_IO_URING_IO_URING_CHANNEL_H_
#define TASKRT_CHANNELS_IO_URING_IO_URING_CHANNEL_H_

// A channel whose I/O is submitted through liburing. Contract:
// core/channel.h.
//
// Wire
//   Each pair is an AF_UNIX SOCK_STREAM socketpair carrying the socketpair
//   backend's (Kore's) wire format: a 4-byte host-endian length, then the
//   payload. Truncation keeps the stream in step exactly as there: a short
//   destination gets the prefix and the full length, the rest is dropped.
//   max_message_size may be at most 2^32 - 1.
//
// One small ring per end
//   Each end owns an io_uring (8 submission / 64 completion entries) and a
//   provided-buffer ring of 16 buffers of 4 KiB, all in one 68 KiB mapping.
//   One end is used by one thread at a time (the channel contract), so the
//   ring needs no lock. A pair costs four descriptors (two sockets, two
//   rings) and about 140 KiB of address space, resident as it is touched.
//
// Receiving: multishot, no system call when data has arrived
//   A multishot IORING_OP_RECV with buffer selection is armed when the pair
//   is created. The kernel copies arriving bytes into the provided buffers
//   and posts completions to the completion queue, shared memory. Every
//   TryReceive reaps them: it copies the bytes into a reassembly buffer,
//   hands each buffer straight back to the buffer ring, and cuts whole
//   messages out, with no system call. Re-arming costs one: the multishot
//   receive ends when all 16 buffers hold unreaped data (more than 16
//   arrivals between two TryReceive calls) or when the kernel cancels it,
//   and the next TryReceive arms it again.
//   Back-pressure: when an end holds 256 KiB or more of unread bytes (with
//   whole messages among them) it parks: it cancels the receive, so that the
//   socket fills and the sender waits, as with a plain socket, and arms a
//   multishot poll of the socket instead, so that new data and the end of
//   the stream still make the ring readable. The first receive that takes it
//   below 256 KiB resumes it, so a sender blocked on a full socket is freed
//   by the receives that make room, and no more.
//
// Sending: batched
//   TrySend copies header and payload into a pending batch and returns; it
//   submits nothing until TryFlush(), or until the batch holds 64 KiB. The
//   whole batch then leaves as one IORING_OP_SEND (MSG_WAITALL |
//   MSG_NOSIGNAL): N small messages cost one io_uring_enter(). A send that
//   finds room in the socket completes inside that call, so the blocking
//   Send() of one message costs one system call, as sendmsg() would. One send
//   is in flight at a time (stream order); meanwhile TrySend keeps filling a
//   second batch up to 64 KiB, then returns WouldBlock(). TryFlush() is OK
//   once the kernel has reported every accepted byte sent.
//
// Readiness
//   send_readiness() and receive_readiness() are both the ring's fd, POLLIN:
//   readable while the completion queue holds entries. Every Try* call reaps
//   the queue before it returns WouldBlock(), so a wait on the fd waits for
//   the next completion: data, end of stream, or the end of the in-flight
//   send. An event loop may watch it edge-triggered (every completion is an
//   edge), with two rules that keep such a watcher from missing anything:
//   - The send side reaps completions up to its own, which may include
//     received data. When it has, it leaves a no-op completion behind
//     (queued with the send, so usually free), and the ring stays readable
//     until the receiving side has looked.
//   - Once the stream has ended (or the receive failed), the ring stays
//     readable for good, as a socket at end of stream does: TryReceive stops
//     reaping and a no-op is left queued if need be. Sends fail at once with
//     kFailedPrecondition (the peer is gone).
//   ReceiveReady() reaps as TryReceive does, and hands nothing out.
//
// Threads and the kernel's task work
//   io_uring finishes a socket request on the thread that submitted it (task
//   work): when data arrives, the thread that armed the receive copies it.
//   The rings use IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG
//   where the kernel has them (5.19; otherwise the default): the kernel
//   does not interrupt that thread if it is running in user space (an
//   inter-processor interrupt costs tens of microseconds on virtual
//   machines) but raises a flag in the shared ring, and TryReceive, seeing
//   it, enters the kernel to run the work; a sleeping thread is woken as
//   usual. Consequences:
//   - A TryReceive that finds nothing costs no system call unless the flag
//     is up; one that finds data that has arrived costs none.
//   - The arming thread is the pair's creator (later, whoever re-armed).
//     In the Kore pattern it is the owner's thread, which is itself the
//     receiver of one end and the sender to the other, so the work runs
//     where it is wanted. If it is neither, and busy in user space, a
//     message waits for its next system call or timer tick (milliseconds);
//     if it has exited, the kernel cancels the receive when it next fires
//     (a few milliseconds) and the end re-arms it from the thread that
//     reaps. Nothing is lost either way. Create pairs on a thread that
//     outlives them and takes part in the traffic (core/task.cc does).
//   - Threads that armed receives may see EINTR from epoll_wait() and
//     poll() (the runtime's own waits retry).
//
// Closing
//   Close() shuts the socket down both ways (the peer reads everything
//   flushed, then end of stream; its sends fail with kFailedPrecondition),
//   cancels whatever is in flight and waits for the kernel to finish with
//   the end's buffers before freeing them. A send not yet reported complete
//   is discarded, as the contract allows. The ring stays open until the end
//   is destroyed, so the readiness fd stays valid.
//
// Where it wins and loses
//   It wins where sends are batched: N TrySend() calls, then one
//   TryFlush(), cost one io_uring_enter() for all N. It loses with one
//   blocking Send()/Receive() per message, where each message still costs
//   an io_uring_enter() to send, task work on the arming thread to receive,
//   and one more copy (provided buffer to reassembly buffer). The README's
//   numbers section has the measurements.
//
// Probe
//   NewIoUringChannelFactory() creates a ring, checks the features
//   (IORING_FEAT_NODROP, IORING_FEAT_FAST_POLL) and opcodes (SEND, RECV,
//   ASYNC_CANCEL) it needs, registers a provided-buffer ring and runs one
//   multishot receive on a scratch socketpair. If the kernel refuses any of
//   it (ENOSYS; EPERM or EACCES under seccomp or kernel.io_uring_disabled;
//   EINVAL from a kernel too old; a missing opcode or feature) it returns
//   kUnavailable, "io_uring: <why>". CreatePair() returns system errors
//   (kResourceExhausted for descriptors or memory) and kInvalidArgument for
//   a max_message_size over 2^32 - 1.

#include <memory>

#include "absl/status/statusor.h"
#include "core/backend.h"
#include "core/channel.h"

namespace taskrt {

absl::StatusOr<std::unique_ptr<ChannelFactory>> NewIoUringChannelFactory();

// This backend's descriptor ("io_uring"), listed in backends/registry.cc.
const ChannelDescriptor& IoUringChannelDescriptor();

}  // namespace taskrt

#endif  // TASKRT_CHANNELS_IO_URING_IO_URING_CHANNEL_H_
