/* placeholder */ typedef int placeholder_server;
