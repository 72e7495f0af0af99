/* erase: the admin command that erases a child or an account as the
 * family could (domain/privacy.h, sql/085_erasure.sql), for a site admin
 * acting on a request that came another way (email, letter):
 *
 *   studyhubctl erase child CHILD_UUID
 *   studyhubctl erase account EMAIL|USER_UUID
 *
 * The same function decides what goes and what a study keeps; the family
 * gets the same report by email ("a site administrator"); researchers'
 * and site admins' accounts can be erased here only.  Prints the report
 * (JSON) and the erasure's id. */
#ifndef STUDYHUB_ADMIN_ERASE_H
#define STUDYHUB_ADMIN_ERASE_H

struct admin_server;

void erase_admin_register(struct admin_server *srv);

#endif
