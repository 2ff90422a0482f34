/*
 * Kore's example programs "tasks" and "pipe_task", reduced to their task
 * calls and the little of Kore's HTTP layer they touch, compiled as C. The
 * task code is Kore's, with the facade's include; what stands in for Kore
 * (the request struct, http_response, kore_malloc, the resume of a bound
 * request) is marked as such. See kore_examples.h.
 */
#define _POSIX_C_SOURCE 200809L

#include <kore/tasks.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kore/kore_examples.h"

#define KORE_RESULT_ERROR 0
#define KORE_RESULT_OK 1
#define KORE_RESULT_RETRY 2

/* Rounds of kore_task_loop_run_once(1000) that ran nothing before a
 * scenario gives up: a hang guard, not a speed check. */
#define IDLE_ROUNDS_BEFORE_GIVING_UP 120

static int failures;

#define CHECK(cond)                                                            \
	do {                                                                   \
		if (!(cond)) {                                                 \
			const char *error_ = kore_task_last_error();           \
			fprintf(stderr, "%s:%d: check failed: %s (last error: %s)\n", \
			    __FILE__, __LINE__, #cond, error_ ? error_ : "none"); \
			failures++;                                            \
		}                                                              \
	} while (0)

/* Pumps the owner's loop until done() or the hang guard; 0 on success. */
static int
pump_until(int (*done)(void), const char *what)
{
	int idle = 0;

	while (!done()) {
		int ran = kore_task_loop_run_once(1000);
		if (ran < 0) {
			fprintf(stderr, "%s: kore_task_loop_run_once: %s\n", what,
			    kore_task_last_error());
			return -1;
		}
		idle = ran == 0 ? idle + 1 : 0;
		if (idle >= IDLE_ROUNDS_BEFORE_GIVING_UP) {
			fprintf(stderr, "%s: nothing happened for %d rounds; giving up\n",
			    what, idle);
			return -1;
		}
	}
	return 0;
}

/* Stands in for kore_malloc: plain malloc, never zeroed; the garbage is
 * made visible (0xa5, as in the crash the issue reported). */
static void *
kore_malloc(size_t len)
{
	void *p = malloc(len);

	if (p != NULL)
		memset(p, 0xa5, len);
	return p;
}

/* ------------------------------------------------------------------ */
/* Kore's "tasks" example. */

/* Stands in for Kore's struct http_request: what the handler touches. */
struct http_request {
	void *hdlr_extra;
	char user[32]; /* the ?user= argument */
	int status;    /* 0 until answered */
	char body[64];
	u_int32_t body_len;
};

static int answered;
static int tasks_expected;

static int
all_answered(void)
{
	return answered == tasks_expected;
}

/* Stands in for Kore's http_response. */
static void
http_response(struct http_request *req, int status, const void *body, u_int32_t len)
{
	req->status = status;
	req->body_len = len < sizeof(req->body) ? len : sizeof(req->body);
	if (body != NULL)
		memcpy(req->body, body, req->body_len);
	answered++;
}

struct rstate {
	struct kore_task task;
};

/* The example's task: it POSTs the user to /post_back with curl and writes
 * the answer back; here the answer is made up without the network. */
static int
run_curl(struct kore_task *t)
{
	char user[64], result[64];
	u_int32_t len;
	int n;

	len = kore_task_channel_read(t, user, sizeof(user));
	if (kore_task_last_error() != NULL || len > sizeof(user))
		return (KORE_RESULT_ERROR);

	n = snprintf(result, sizeof(result), "posted: %.*s", (int)len, user);
	kore_task_channel_write(t, result, (u_int32_t)n);
	if (kore_task_last_error() != NULL)
		return (KORE_RESULT_ERROR);
	return (KORE_RESULT_OK);
}

/* The example's page handler, as Kore runs it: once when the request
 * arrives, then every time its task writes or finishes. */
static int
page_handler(struct http_request *req)
{
	u_int32_t len;
	struct rstate *state;
	char result[64];

	if (req->hdlr_extra == NULL) {
		state = kore_malloc(sizeof(*state));
		if (state == NULL) {
			http_response(req, 500, NULL, 0);
			return (KORE_RESULT_OK);
		}
		req->hdlr_extra = state;

		kore_task_create(&state->task, run_curl);
		kore_task_bind_request(&state->task, req);

		kore_task_run(&state->task);
		kore_task_channel_write(&state->task, req->user, (u_int32_t)strlen(req->user));

		return (KORE_RESULT_RETRY);
	} else {
		state = req->hdlr_extra;
	}

	if (kore_task_state(&state->task) != KORE_TASK_STATE_FINISHED) {
		/* http_request_sleep(req): wait for the next resume. */
		return (KORE_RESULT_RETRY);
	}

	if (kore_task_result(&state->task) != KORE_RESULT_OK) {
		kore_task_destroy(&state->task);
		http_response(req, 500, NULL, 0);
		return (KORE_RESULT_OK);
	}

	len = kore_task_channel_read(&state->task, result, sizeof(result));
	if (len > sizeof(result)) {
		http_response(req, 500, NULL, 0);
	} else {
		http_response(req, 200, result, len);
	}

	kore_task_destroy(&state->task);

	return (KORE_RESULT_OK);
}

/* Stands in for Kore's http_request_wakeup and its re-run of the handler. */
static void
resume_request(struct http_request *req)
{
	if (req->status != 0) {
		fprintf(stderr, "request for %s resumed after its answer\n", req->user);
		failures++;
		return;
	}
	(void)page_handler(req);
}

int
kore_example_tasks(int requests)
{
	struct http_request *reqs;
	int i;

	failures = 0;
	answered = 0;
	reqs = calloc((size_t)requests, sizeof(*reqs));
	if (reqs == NULL)
		return 1;
	kore_task_set_request_resume(resume_request);

	for (i = 0; i < requests; i++) {
		snprintf(reqs[i].user, sizeof(reqs[i].user), "user%d", i);
		CHECK(page_handler(&reqs[i]) == KORE_RESULT_RETRY);
		CHECK(kore_task_last_error() == NULL);
	}
	tasks_expected = requests;
	if (pump_until(all_answered, "tasks") != 0)
		failures++;
	CHECK(answered == requests);

	for (i = 0; i < requests; i++) {
		char expected[64];
		int n = snprintf(expected, sizeof(expected), "posted: user%d", i);

		CHECK(reqs[i].status == 200);
		CHECK(reqs[i].body_len == (u_int32_t)n &&
		    memcmp(reqs[i].body, expected, (size_t)n) == 0);
		if (reqs[i].status == 0 && reqs[i].hdlr_extra != NULL) {
			struct rstate *state = reqs[i].hdlr_extra;
			kore_task_destroy(&state->task);
		}
		free(reqs[i].hdlr_extra); /* Kore frees hdlr_extra with the request */
	}
	kore_task_set_request_resume(NULL);
	free(reqs);
	return failures;
}

/* ------------------------------------------------------------------ */
/* Kore's "pipe_task" example. */

static char pipe_path[256];
static int pipe_lines;
static int pipe_burst;

/* Fills the pipe in bursts: `pipe_burst` lines per write(). */
static void *
pipe_writer(void *arg)
{
	char *burst;
	size_t cap, used;
	int fd, i;

	(void)arg;
	if ((fd = open(pipe_path, O_WRONLY)) == -1) {
		fprintf(stderr, "pipe writer: open: %s\n", strerror(errno));
		return NULL;
	}
	cap = (size_t)pipe_burst * 32;
	burst = malloc(cap);
	for (i = 0; burst != NULL && i < pipe_lines;) {
		size_t off = 0;
		int end = i + pipe_burst;

		used = 0;
		for (; i < end && i < pipe_lines; i++)
			used += (size_t)snprintf(burst + used, cap - used, "line %d\n", i);
		while (off < used) {
			ssize_t n = write(fd, burst + off, used - off);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0) {
				fprintf(stderr, "pipe writer: write: %s\n", strerror(errno));
				i = pipe_lines;
				break;
			}
			off += (size_t)n;
		}
	}
	free(burst);
	close(fd);
	return NULL;
}

/* The example's task: reads the pipe and forwards each line. */
static int
pipe_reader(struct kore_task *t)
{
	FILE *in;
	char line[64];

	if ((in = fopen(pipe_path, "r")) == NULL)
		return (KORE_RESULT_ERROR);

	while (fgets(line, sizeof(line), in) != NULL) {
		kore_task_channel_write(t, line, (u_int32_t)strlen(line));
		if (kore_task_last_error() != NULL) {
			fclose(in);
			return (KORE_RESULT_ERROR);
		}
	}
	fclose(in);
	return (KORE_RESULT_OK);
}

static int lines_seen;
static int lines_read_one_per_call;
static int pipe_done;

static int
pipe_is_done(void)
{
	return pipe_done;
}

static void
check_line(const char *buf, u_int32_t len)
{
	char expected[32];
	int n = snprintf(expected, sizeof(expected), "line %d\n", lines_seen);

	if (len != (u_int32_t)n || memcmp(buf, expected, (size_t)n) != 0) {
		if (failures++ < 5)
			fprintf(stderr, "pipe_task: message %d is \"%.*s\", not \"%s\"\n",
			    lines_seen, (int)(len < 32 ? len : 32), buf, expected);
	}
	lines_seen++;
}

/* The example's callback: one message per call. */
static void
pipe_data_available(struct kore_task *t)
{
	u_int8_t buf[BUFSIZ];
	u_int32_t len;

	if (kore_task_finished(t)) {
		/* Kore's example only logs here. Lines still unread at the
		 * end are read now, so the check can count every line. */
		for (;;) {
			len = kore_task_channel_read(t, buf, sizeof(buf));
			if (kore_task_last_error() != NULL)
				break;
			check_line((const char *)buf, len);
		}
		pipe_done = 1;
		return;
	}

	len = kore_task_channel_read(t, buf, sizeof(buf));
	if (kore_task_last_error() != NULL) {
		fprintf(stderr, "pipe_task: read: %s\n", kore_task_last_error());
		failures++;
		return;
	}
	if (len > sizeof(buf))
		len = sizeof(buf);
	check_line((const char *)buf, len);
	lines_read_one_per_call++;
}

int
kore_example_pipe_task(int lines, int burst)
{
	struct kore_task *task;
	pthread_t writer;
	const char *dir = getenv("TEST_TMPDIR");

	failures = 0;
	lines_seen = 0;
	lines_read_one_per_call = 0;
	pipe_done = 0;
	pipe_lines = lines;
	pipe_burst = burst;
	snprintf(pipe_path, sizeof(pipe_path), "%s/kore_pipe_task.%ld",
	    dir != NULL ? dir : "/tmp", (long)getpid());
	unlink(pipe_path);
	if (mkfifo(pipe_path, 0600) == -1) {
		fprintf(stderr, "mkfifo %s: %s\n", pipe_path, strerror(errno));
		return 1;
	}
	if (pthread_create(&writer, NULL, pipe_writer, NULL) != 0) {
		unlink(pipe_path);
		return 1;
	}

	task = kore_malloc(sizeof(*task));
	kore_task_create(task, pipe_reader);
	kore_task_bind_callback(task, pipe_data_available);
	kore_task_run(task);
	CHECK(kore_task_last_error() == NULL);

	if (pump_until(pipe_is_done, "pipe_task") != 0)
		failures++;
	pthread_join(writer, NULL);

	CHECK(lines_seen == lines);
	CHECK(lines_read_one_per_call > 0);
	CHECK(kore_task_result(task) == KORE_RESULT_OK);
	kore_task_destroy(task);
	CHECK(kore_task_last_error() == NULL);
	free(task);
	unlink(pipe_path);
	if (failures != 0)
		fprintf(stderr, "pipe_task: %d of %d lines seen, %d one per call\n",
		    lines_seen, lines, lines_read_one_per_call);
	return failures;
}

/* ------------------------------------------------------------------ */
/* Task structs in un-zeroed memory. */

static int
quick_entry(struct kore_task *t)
{
	(void)t;
	return 5;
}

static int quick_finished;

static int
quick_is_finished(void)
{
	return quick_finished;
}

static void
quick_callback(struct kore_task *t)
{
	if (kore_task_finished(t))
		quick_finished = 1;
}

/* Every call on `t`, which is not a live task, is refused and leaves the
 * struct's bytes as they were. */
static void
expect_refused_everywhere(struct kore_task *t, struct http_request *req)
{
	struct kore_task before;
	char buf[8];

	memcpy(&before, t, sizeof(before));
	kore_task_bind_request(t, req);
	CHECK(kore_task_last_error() != NULL);
	kore_task_bind_callback(t, quick_callback);
	CHECK(kore_task_last_error() != NULL);
	kore_task_run(t);
	CHECK(kore_task_last_error() != NULL);
	kore_task_channel_write(t, "x", 1);
	CHECK(kore_task_last_error() != NULL);
	CHECK(kore_task_channel_read(t, buf, sizeof(buf)) == 0);
	CHECK(kore_task_last_error() != NULL);
	CHECK(kore_task_finished(t) == 0);
	CHECK(kore_task_last_error() != NULL);
	CHECK(kore_task_result(t) == 0);
	CHECK(kore_task_last_error() != NULL);
	CHECK(kore_task_cancel_requested(t) == 1);
	CHECK(kore_task_state(t) == 0);
	kore_task_destroy(t);
	CHECK(kore_task_last_error() != NULL);
	CHECK(memcmp(&before, t, sizeof(before)) == 0);
}

int
kore_example_unzeroed_structs(void)
{
	struct kore_task *never, *task, *copy;
	struct http_request req;

	failures = 0;
	memset(&req, 0, sizeof(req));
	never = kore_malloc(sizeof(*never));
	task = kore_malloc(sizeof(*task));
	copy = kore_malloc(sizeof(*copy));

	/* Never created: garbage throughout, every call refused. */
	expect_refused_everywhere(never, &req);

	/* Created on garbage: a task like any other. */
	kore_task_create(task, quick_entry);
	CHECK(kore_task_last_error() == NULL);
	CHECK(kore_task_state(task) == KORE_TASK_STATE_CREATED);
	/* A second create is refused and changes nothing. */
	kore_task_create(task, quick_entry);
	CHECK(kore_task_last_error() != NULL);
	CHECK(kore_task_state(task) == KORE_TASK_STATE_CREATED);

	/* A byte-for-byte copy of a live struct is not that task. */
	memcpy(copy, task, sizeof(*copy));
	expect_refused_everywhere(copy, &req);

	quick_finished = 0;
	kore_task_bind_callback(task, quick_callback);
	CHECK(kore_task_last_error() == NULL);
	kore_task_run(task);
	CHECK(kore_task_last_error() == NULL);
	if (pump_until(quick_is_finished, "unzeroed") != 0)
		failures++;
	CHECK(kore_task_result(task) == 5);
	kore_task_destroy(task);
	CHECK(kore_task_last_error() == NULL);

	/* Destroyed: refused everywhere, as if never created. */
	expect_refused_everywhere(task, &req);

	/* The same memory makes a new task. */
	kore_task_create(task, quick_entry);
	CHECK(kore_task_last_error() == NULL);
	CHECK(kore_task_state(task) == KORE_TASK_STATE_CREATED);
	kore_task_destroy(task);
	CHECK(kore_task_last_error() == NULL);

	free(copy);
	free(task);
	free(never);
	return failures;
}
