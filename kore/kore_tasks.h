/*
 * Kore's tasks API as a C facade over taskrt, so Kore-style C code runs
 * unchanged on any scheduler, channel and event-loop backend.
 *
 * The eight functions of Kore's reference keep their exact signatures. What
 * differs from Kore, each time for safety:
 *   - nothing aborts: binding both a request and a callback, writing to a
 *     destroyed task, oversized messages and the like are refused, the call
 *     does nothing, and kore_task_last_error() says why;
 *   - a read into a short buffer returns the original length and drops the
 *     rest of that message, so the stream stays in step;
 *   - kore_task_destroy() is safe at any point; a running task is asked to
 *     cancel (kore_task_cancel_requested()) and detached.
 *
 *   - the struct may sit in un-zeroed memory (kore_malloc): the facade
 *     knows live tasks by the struct's address and never reads a pointer
 *     out of it, so a second create of a live task, and any call on a
 *     destroyed or never-created struct, set kore_task_last_error() and
 *     do nothing else;
 *   - a bound callback or request is called again while messages it left
 *     unread wait (Kore's task sockets were level-triggered), so it may
 *     read one message per call; once the task has finished it is called
 *     exactly once more, and messages it leaves unread then cause no
 *     further call (read them in that call if they matter).
 *
 * Additions: choosing the backends (kore_task_runtime_init), pumping the
 * owner's loop from C (kore_task_loop_run_once), kore_task_state,
 * kore_task_result, the request-resume hook for bind_request,
 * channel reads and writes with a timeout, and entries known by name
 * (kore_task_register, kore_task_create_named, kore_task_attempt) for
 * schedulers that run entries in other processes.
 *
 * Threads: the owner's calls (create, run, bind, destroy, the owner side of
 * the channel, the loop pump, runtime init and shutdown) come from one
 * thread, the owner's; from inside an entry they are refused. As in Kore,
 * kore_task_channel_write/read pick the channel end by who calls: inside the
 * task's own entry they talk to the owner, in the owner to the task, and
 * inside another task's entry they are refused. That
 * holds on every scheduler, the cooperative one included, whose entries
 * share one thread. An entry's channel calls and
 * kore_task_cancel_requested() stay safe after the owner destroyed its
 * task: they fail (or return 1) and never touch the freed task.
 * kore_task_state, kore_task_finished and kore_task_result may be called
 * from any thread.
 *
 * Kore programs may include this header as <kore/tasks.h>.
 */
#ifndef TASKRT_KORE_KORE_TASKS_H_
#define TASKRT_KORE_KORE_TASKS_H_

#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KORE_TASK_STATE_CREATED 1
#define KORE_TASK_STATE_RUNNING 2
#define KORE_TASK_STATE_FINISHED 3
#define KORE_TASK_STATE_ABORT 4 /* never set, as in Kore */

/* Kore's own values, for kore_task_register; kore.h defines the same. */
#ifndef KORE_RESULT_ERROR
#define KORE_RESULT_ERROR 0
#endif
#ifndef KORE_RESULT_OK
#define KORE_RESULT_OK 1
#endif

/* Kore's request type; the facade only passes pointers to the resume hook. */
struct http_request;

/*
 * Allocated by the caller, as in Kore (usually embedded in a larger struct,
 * from memory that need not be zeroed).
 */
struct kore_task {
	void *impl; /* set by create, NULL after destroy; never read by the facade */
	void *arg;  /* free for the caller; the facade never touches it */
};

/* Kore's API. */
void kore_task_create(struct kore_task *t, int (*entry)(struct kore_task *));
void kore_task_run(struct kore_task *t);
void kore_task_bind_request(struct kore_task *t, struct http_request *req);
void kore_task_bind_callback(struct kore_task *t, void (*cb)(struct kore_task *));
void kore_task_destroy(struct kore_task *t);
int kore_task_finished(struct kore_task *t);
void kore_task_channel_write(struct kore_task *t, void *data, u_int32_t length);
u_int32_t kore_task_channel_read(struct kore_task *t, void *out, u_int32_t length);

/* KORE_TASK_STATE_*; 0 for a task that was never created or was destroyed. */
int kore_task_state(struct kore_task *t);
/* The entry's return value once finished; 0 before. */
int kore_task_result(struct kore_task *t);
/* 1 once the owner asked the task to stop (destroy); for the task's entry. */
int kore_task_cancel_requested(struct kore_task *t);

/*
 * As kore_task_channel_write and kore_task_channel_read, giving up after
 * timeout_ms milliseconds (-1: no limit; 0: only what can be done at once).
 * A timed-out call sent or took nothing: the channel is as it was, and the
 * message read later arrives whole. Write returns 0, or -1; read returns
 * the message's length, or 0 with kore_task_last_error() set (a timeout
 * says "deadline"). From the entry for its own task, or from the owner.
 */
int kore_task_channel_write_timeout(struct kore_task *t, void *data, u_int32_t length,
				    int timeout_ms);
u_int32_t kore_task_channel_read_timeout(struct kore_task *t, void *out, u_int32_t length,
					 int timeout_ms);

/*
 * Entries known by name. A scheduler that runs entries in other processes
 * (a worker pool on other machines) cannot take a function pointer: it runs
 * an entry by a name that the owner and every worker binary register at
 * start-up, each the same way (core/entry_registry.h).
 *
 * kore_task_register registers `entry` under `name` (1 to 128 bytes of
 * A-Z a-z 0-9 _ . : -) in the process's registry of entries. Returns
 * KORE_RESULT_OK, or KORE_RESULT_ERROR with kore_task_last_error() set: a
 * NULL or bad name, a NULL entry, a name already registered, an entry
 * already registered under another name. Names stay registered for the
 * life of the process. May be called from any thread.
 *
 * Wherever the registered entry runs, in this process or in a worker with
 * no owner's struct, it is given a struct kore_task: in this process the
 * one the owner created the task with, in a worker one of its own (its
 * `arg` is NULL: a worker has no owner's memory). Its calls on that struct
 * (kore_task_channel_read/write, the timeouts, kore_task_cancel_requested,
 * kore_task_attempt) go to its task's channel, as inside any entry.
 *
 * kore_task_create with a registered entry creates the task as the named
 * one, so a program that registers its entries runs unchanged on a
 * scheduler that runs them elsewhere; with an unregistered entry it creates
 * it as always (such a task cannot run there: kore_task_run sets the
 * error).
 *
 * kore_task_create_named creates `t` as the entry registered as `name`;
 * an unknown name sets kore_task_last_error() (kNotFound) and creates
 * nothing. Otherwise as kore_task_create.
 *
 * kore_task_attempt, inside the entry for its own task: 1 for a first run;
 * 2, 3, ... when a scheduler that delivers at least once runs the entry
 * again after a worker died (work it finished before may have been done
 * already). Elsewhere 0 with kore_task_last_error() set.
 */
int kore_task_register(const char *name, int (*entry)(struct kore_task *));
void kore_task_create_named(struct kore_task *t, const char *name);
int kore_task_attempt(struct kore_task *t);

/*
 * Chooses the backends by the names of the backend registry
 * (backends/registry.h: every scheduler, channel and event loop the
 * project has), and the number of worker threads (1 to 1024; a scheduler
 * with one thread of its own ignores it). Without this call the first
 * kore_task_run() uses Kore's defaults (the registry's Defaults(): a thread
 * pool of 2 threads, Kore's socket wire format, epoll). Returns 0, or -1
 * with kore_task_last_error() set
 * (unknown name, which lists the known ones; a bad worker count; a backend
 * the kernel refuses; already running).
 */
int kore_task_runtime_init(const char *scheduler, const char *channel, const char *loop,
			   unsigned int workers);
/*
 * Lets the running entries finish, stops the threads and frees the runtime.
 * Refused (kore_task_last_error() set) while any task still exists.
 */
void kore_task_runtime_shutdown(void);

/*
 * Runs the owner's event loop once: waits up to timeout_ms (-1: no limit)
 * for task events, runs bound callbacks and resumes bound requests. Returns
 * how many it ran, or -1 with kore_task_last_error() set.
 */
int kore_task_loop_run_once(int timeout_ms);

/* Called with the bound request when its task writes or finishes. */
void kore_task_set_request_resume(void (*resume)(struct http_request *));

/*
 * Why the caller's last facade call failed, or NULL if it succeeded. Kept
 * per entry inside a task's entry (per thread elsewhere); valid until the
 * same caller's next facade call.
 */
const char *kore_task_last_error(void);

#ifdef __cplusplus
}
#endif

#endif /* TASKRT_KORE_KORE_TASKS_H_ */
