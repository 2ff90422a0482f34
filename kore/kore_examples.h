/*
 * Kore's own example programs, reduced to their task calls and compiled as
 * C against <kore/tasks.h>: what a Kore user runs first. Each returns the
 * number of failed checks (0: passed) and prints each failure to stderr.
 * Run them after kore_task_runtime_init() on any backend combination;
 * each destroys every task it created.
 */
#ifndef TASKRT_KORE_KORE_EXAMPLES_H_
#define TASKRT_KORE_KORE_EXAMPLES_H_

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Kore's "tasks" example: a page handler creates a task per request in
 * kore_malloc'd (un-zeroed) state, binds the request to it, runs it and
 * writes the user's argument; it is re-run on every resume until the task
 * is KORE_TASK_STATE_FINISHED, then reads the answer and destroys the task.
 * `requests` requests are in flight at once.
 */
int kore_example_tasks(int requests);

/*
 * Kore's "pipe_task" example: a task reads lines from a pipe, which another
 * thread fills in bursts, and forwards each line to the owner; the bound
 * callback reads one message per call, as pipe_data_available does. Every
 * line must arrive, once, in order.
 */
int kore_example_pipe_task(int lines, int burst);

/*
 * Task structs in un-zeroed memory: create on garbage works; a second
 * create, and every call on a never-created or destroyed struct, sets
 * kore_task_last_error() and does nothing else.
 */
int kore_example_unzeroed_structs(void);

#ifdef __cplusplus
}
#endif

#endif /* TASKRT_KORE_KORE_EXAMPLES_H_ */
