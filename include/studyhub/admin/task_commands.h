/* task_commands: the admin socket's task commands (tasks, task show |
 * cancel | enqueue-test). */
#ifndef STUDYHUB_ADMIN_TASK_COMMANDS_H
#define STUDYHUB_ADMIN_TASK_COMMANDS_H

struct admin_server;

/* Registers them; they use app->pg and app->tasks. */
void task_commands_register(struct admin_server *admin);

#endif
