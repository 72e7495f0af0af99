/* placeholder */ typedef int placeholder_admin;
