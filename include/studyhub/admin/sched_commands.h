/* sched_commands: the admin socket's scheduler commands (jobs, run JOB). */
#ifndef STUDYHUB_ADMIN_SCHED_COMMANDS_H
#define STUDYHUB_ADMIN_SCHED_COMMANDS_H

struct admin_server;

/* Registers them; they use app->sched. */
void sched_commands_register(struct admin_server *admin);

#endif
