/*
 * Kore's own include path for the tasks API: Kore programs write
 * #include <kore/tasks.h>. Everything is in kore_tasks.h.
 */
#ifndef TASKRT_KORE_TASKS_H_
#define TASKRT_KORE_TASKS_H_

#include "kore/kore_tasks.h"

#endif /* TASKRT_KORE_TASKS_H_ */
