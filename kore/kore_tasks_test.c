/*
 * Drives the Kore C facade end to end, compiled as C: create, bind, run,
 * both directions of the channel, truncation, the final callback, results,
 * refused misuse, destroy. Exits non-zero on the first failed check.
 */
#include "kore/kore_tasks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0;

#define CHECK(cond)                                                            \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "%s:%d: check failed: %s (last error: %s)\n", \
			    __FILE__, __LINE__, #cond,                         \
			    kore_task_last_error() ? kore_task_last_error() : "none"); \
			failures++;                                            \
		}                                                              \
	} while (0)

/* Echo task: reads one message from the owner, writes it back upper-cased,
 * then a short-buffer read, then "done". */
static int
echo_entry(struct kore_task *t)
{
	char buf[64];
	u_int32_t len, i;
	char small[3];

	len = kore_task_channel_read(t, buf, sizeof(buf));
	if (kore_task_last_error() != NULL || len > sizeof(buf))
		return 1;
	for (i = 0; i < len; i++)
		if (buf[i] >= 'a' && buf[i] <= 'z')
			buf[i] -= 32;
	kore_task_channel_write(t, buf, len);

	/* Truncation: the original length comes back, the stream stays in step. */
	len = kore_task_channel_read(t, small, sizeof(small));
	if (len != 10 || memcmp(small, "abc", 3) != 0)
		return 2;
	len = kore_task_channel_read(t, buf, sizeof(buf));
	if (len != 4 || memcmp(buf, "next", 4) != 0)
		return 3;

	kore_task_channel_write(t, "done", 4);
	return 42;
}

static int callback_calls = 0;
static int final_calls = 0;
static char received[256];
static size_t received_len = 0;

static void
echo_callback(struct kore_task *t)
{
	callback_calls++;
	if (kore_task_finished(t)) {
		final_calls++;
		/* Everything the task wrote is still readable in the final call. */
		while (received_len < 9) {
			u_int32_t n = kore_task_channel_read(t,
			    received + received_len, sizeof(received) - received_len);
			if (kore_task_last_error() != NULL)
				break;
			received_len += n;
		}
	}
}

static int
quick_entry(struct kore_task *t)
{
	(void)t;
	return 5;
}

/* The owner's calls from inside an entry are refused, not raced. */
static int
meddling_entry(struct kore_task *t)
{
	struct kore_task other;
	int refused = 0;

	kore_task_destroy(t);
	refused += kore_task_last_error() != NULL;
	kore_task_create(&other, quick_entry);
	refused += kore_task_last_error() != NULL;
	refused += kore_task_loop_run_once(0) == -1;
	kore_task_runtime_shutdown();
	refused += kore_task_last_error() != NULL;
	kore_task_channel_write(&other, "x", 1); /* another task's channel */
	refused += kore_task_last_error() != NULL;
	kore_task_channel_write(t, "still mine", 10);
	refused += kore_task_last_error() == NULL;
	return refused;
}

/* Timed reads and writes: a timed-out read takes nothing, so the owner's
 * message still arrives whole; a bad timeout is refused. */
static int
timed_out(u_int32_t len)
{
	const char *err = kore_task_last_error();
	return len == 0 && err != NULL && strstr(err, "DEADLINE_EXCEEDED") != NULL;
}

static int
patient_entry(struct kore_task *t)
{
	char buf[32];
	u_int32_t len;

	if (!timed_out(kore_task_channel_read_timeout(t, buf, sizeof(buf), 0)))
		return 1;
	if (!timed_out(kore_task_channel_read_timeout(t, buf, sizeof(buf), 5)))
		return 2;
	if (kore_task_channel_write_timeout(t, "waited", 6, -1) != 0)
		return 3;
	len = kore_task_channel_read_timeout(t, buf, sizeof(buf), -1);
	if (kore_task_last_error() != NULL || len != 7 || memcmp(buf, "arrived", 7) != 0)
		return 4;
	if (kore_task_channel_read_timeout(t, buf, sizeof(buf), -2) != 0 ||
	    kore_task_last_error() == NULL)
		return 5;
	return 7;
}

/* Registered by name: replies "<message>:<attempt>:<arg>", where <arg> says
 * whether the struct is the owner's (which carries a marker in arg). */
static char owner_marker;

static int
named_entry(struct kore_task *t)
{
	char buf[64];
	u_int32_t len;
	int attempt;

	attempt = kore_task_attempt(t);
	if (kore_task_last_error() != NULL)
		return -1;
	len = kore_task_channel_read(t, buf, sizeof(buf));
	if (kore_task_last_error() != NULL || len > 32)
		return -2;
	len += (u_int32_t)snprintf(buf + len, sizeof(buf) - len, ":%d:%s", attempt,
	    t->arg == &owner_marker ? "owner" : "own");
	kore_task_channel_write(t, buf, len);
	if (kore_task_last_error() != NULL)
		return -3;
	return 30 + attempt;
}

static int request_resumes = 0;
static void
resume_request(struct http_request *req)
{
	(void)req;
	request_resumes++;
}

static void
pump_until_finished(struct kore_task *t)
{
	int rounds = 0;
	while (!kore_task_finished(t) && rounds++ < 100000)
		if (kore_task_loop_run_once(100) < 0)
			break;
}

static void
pump_until_finished(struct kore_task *t);

/* Runs `t` (created, arg set by the caller), sends "ping", checks the
 * named entry's reply and result, and destroys it. */
static void
run_named_task(struct kore_task *t)
{
	char msg[64];
	u_int32_t len;

	CHECK(kore_task_state(t) == KORE_TASK_STATE_CREATED);
	kore_task_run(t);
	CHECK(kore_task_last_error() == NULL);
	kore_task_channel_write(t, "ping", 4);
	CHECK(kore_task_last_error() == NULL);
	len = kore_task_channel_read(t, msg, sizeof(msg));
	CHECK(kore_task_last_error() == NULL);
	CHECK(len == 12 && memcmp(msg, "ping:1:owner", 12) == 0);
	pump_until_finished(t);
	CHECK(kore_task_result(t) == 31);
	kore_task_destroy(t);
	CHECK(kore_task_last_error() == NULL);
}

/* Entries known by name: registration's errors, create by name, create of a
 * registered entry, and attempt(). */
static void
check_named_entries(void)
{
	struct kore_task t;
	const char *err;

	CHECK(kore_task_register("kore.test.named", named_entry) == KORE_RESULT_OK);
	CHECK(kore_task_last_error() == NULL);

	/* A taken name, a function with a name already, bad input. */
	CHECK(kore_task_register("kore.test.named", quick_entry) == KORE_RESULT_ERROR);
	err = kore_task_last_error();
	CHECK(err != NULL && strstr(err, "ALREADY_EXISTS") != NULL &&
	    strstr(err, "kore.test.named") != NULL);
	CHECK(kore_task_register("kore.test.other_name", named_entry) == KORE_RESULT_ERROR);
	CHECK(kore_task_last_error() != NULL);
	CHECK(kore_task_register("bad name", quick_entry) == KORE_RESULT_ERROR);
	err = kore_task_last_error();
	CHECK(err != NULL && strstr(err, "INVALID_ARGUMENT") != NULL);
	CHECK(kore_task_register("", quick_entry) == KORE_RESULT_ERROR);
	CHECK(kore_task_register(NULL, quick_entry) == KORE_RESULT_ERROR);
	CHECK(kore_task_register("kore.test.null", NULL) == KORE_RESULT_ERROR);
	CHECK(kore_task_last_error() != NULL);

	/* An unknown name: nothing is created. */
	memset(&t, 0, sizeof(t));
	kore_task_create_named(&t, "kore.test.unknown");
	err = kore_task_last_error();
	CHECK(err != NULL && strstr(err, "NOT_FOUND") != NULL &&
	    strstr(err, "kore.test.unknown") != NULL);
	CHECK(kore_task_state(&t) == 0);
	kore_task_create_named(&t, NULL);
	CHECK(kore_task_last_error() != NULL);

	/* The owner has no attempt. */
	CHECK(kore_task_attempt(&t) == 0);
	CHECK(kore_task_last_error() != NULL);

	/* By name, and by the registered function: in this process the entry
	 * gets the owner's struct. */
	memset(&t, 0, sizeof(t));
	kore_task_create_named(&t, "kore.test.named");
	CHECK(kore_task_last_error() == NULL);
	t.arg = &owner_marker;
	run_named_task(&t);

	memset(&t, 0, sizeof(t));
	kore_task_create(&t, named_entry);
	CHECK(kore_task_last_error() == NULL);
	t.arg = &owner_marker;
	run_named_task(&t);

	/* A second create of a live struct is refused, by name too. */
	memset(&t, 0, sizeof(t));
	kore_task_create_named(&t, "kore.test.named");
	kore_task_create_named(&t, "kore.test.named");
	CHECK(kore_task_last_error() != NULL);
	kore_task_destroy(&t);
	CHECK(kore_task_last_error() == NULL);
}

/* argv: the scheduler, channel and loop to run on (see kore/BUILD). */
int
main(int argc, char **argv)
{
	struct kore_task task, other;

	if (argc != 4) {
		fprintf(stderr, "usage: %s SCHEDULER CHANNEL LOOP\n", argv[0]);
		return 2;
	}
	/* Bad backend names and zero workers are refused, not fatal. */
	CHECK(kore_task_runtime_init("no_such", argv[2], argv[3], 2) == -1);
	CHECK(kore_task_last_error() != NULL);
	CHECK(kore_task_runtime_init(argv[1], argv[2], argv[3], 0) == -1);
	CHECK(kore_task_runtime_init(argv[1], argv[2], argv[3], 2) == 0);
	printf("[ backend  ] scheduler=%s(2) channel=%s loop=%s\n", argv[1], argv[2], argv[3]);

	memset(&task, 0, sizeof(task));
	kore_task_create(&task, echo_entry);
	CHECK(kore_task_state(&task) == KORE_TASK_STATE_CREATED);
	kore_task_bind_callback(&task, echo_callback);
	CHECK(kore_task_last_error() == NULL);

	/* Kore aborts here; the facade refuses. */
	kore_task_bind_request(&task, NULL);
	CHECK(kore_task_last_error() != NULL);

	kore_task_run(&task);
	CHECK(kore_task_last_error() == NULL);
	CHECK(kore_task_state(&task) == KORE_TASK_STATE_RUNNING);

	kore_task_channel_write(&task, "hello", 5);
	CHECK(kore_task_last_error() == NULL);
	kore_task_channel_write(&task, "abcdefghij", 10);
	kore_task_channel_write(&task, "next", 4);

	pump_until_finished(&task);
	CHECK(kore_task_finished(&task) == 1);
	CHECK(kore_task_state(&task) == KORE_TASK_STATE_FINISHED);
	CHECK(kore_task_result(&task) == 42);
	CHECK(final_calls == 1);
	CHECK(callback_calls >= 1);
	CHECK(received_len == 9 && memcmp(received, "HELLOdone", 9) == 0);

	/* Closed and drained: an error, not an abort. */
	kore_task_channel_read(&task, received, sizeof(received));
	CHECK(kore_task_last_error() != NULL);

	kore_task_destroy(&task);
	CHECK(kore_task_state(&task) == 0);
	kore_task_channel_write(&task, "x", 1);
	CHECK(kore_task_last_error() != NULL);

	/* A bound request is resumed through the application's hook. */
	kore_task_set_request_resume(resume_request);
	memset(&other, 0, sizeof(other));
	kore_task_create(&other, quick_entry);
	kore_task_bind_request(&other, (struct http_request *)&other);
	CHECK(kore_task_last_error() == NULL);
	kore_task_run(&other);
	pump_until_finished(&other);
	CHECK(kore_task_result(&other) == 5);
	CHECK(request_resumes >= 1);

	memset(&task, 0, sizeof(task));
	kore_task_create(&task, meddling_entry);
	kore_task_run(&task);
	pump_until_finished(&task);
	CHECK(kore_task_result(&task) == 6);
	{
		char msg[16];
		CHECK(kore_task_channel_read(&task, msg, sizeof(msg)) == 10);
	}
	kore_task_destroy(&task);
	CHECK(kore_task_last_error() == NULL);

	memset(&task, 0, sizeof(task));
	kore_task_create(&task, patient_entry);
	kore_task_run(&task);
	{
		char msg[16];
		u_int32_t len = kore_task_channel_read_timeout(&task, msg, sizeof(msg), -1);
		CHECK(kore_task_last_error() == NULL && len == 6 && memcmp(msg, "waited", 6) == 0);
		/* The entry now waits for us: nothing to read on this side. */
		CHECK(timed_out(kore_task_channel_read_timeout(&task, msg, sizeof(msg), 0)));
		CHECK(kore_task_channel_write_timeout(&task, "arrived", 7, 1000) == 0);
		CHECK(kore_task_channel_write_timeout(&task, NULL, 3, 0) == -1);
		CHECK(kore_task_last_error() != NULL);
	}
	pump_until_finished(&task);
	CHECK(kore_task_result(&task) == 7);
	kore_task_destroy(&task);

	check_named_entries();

	/* Shutdown is refused while a task exists. */
	kore_task_runtime_shutdown();
	CHECK(kore_task_last_error() != NULL);
	kore_task_destroy(&other);
	kore_task_runtime_shutdown();
	CHECK(kore_task_last_error() == NULL);

	if (failures != 0) {
		fprintf(stderr, "%d check(s) failed\n", failures);
		return 1;
	}
	printf("kore C facade: all checks passed\n");
	return 0;
}
