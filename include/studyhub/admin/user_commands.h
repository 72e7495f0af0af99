/* user_commands: the admin socket's user commands (token create). */
#ifndef STUDYHUB_ADMIN_USER_COMMANDS_H
#define STUDYHUB_ADMIN_USER_COMMANDS_H

struct admin_server;

/* Registers them; they use app->pg and app->cfg. */
void user_commands_register(struct admin_server *srv);

#endif
