/* placeholder */ typedef int placeholder_migrate;
