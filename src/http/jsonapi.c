/* placeholder */ typedef int placeholder_jsonapi;
