/* placeholder */ typedef int placeholder_pg;
