/* placeholder */ typedef int placeholder_redis;
