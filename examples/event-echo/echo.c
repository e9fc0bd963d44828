// An event function: exports nimbus:function/handler (wit/nimbus-function.wit).
// Answers with a JSON document describing the event it received.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "event_function.h"

static int looks_like_json(const uint8_t *p, size_t n) {
  while (n > 0 && (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')) { p++; n--; }
  return n > 0 && (*p == '{' || *p == '[' || *p == '"' || (*p >= '0' && *p <= '9') ||
                   *p == '-' || *p == 't' || *p == 'f' || *p == 'n');
}

bool exports_nimbus_function_handler_handle(exports_nimbus_function_handler_event_t *event,
                                            event_function_list_u8_t *ret,
                                            event_function_string_t *err) {
  printf("event %.*s of type %.*s (%zu bytes)\n", (int)event->id.len, event->id.ptr,
         (int)event->type.len, event->type.ptr, event->data.len);
  fflush(stdout);
  int json = looks_like_json(event->data.ptr, event->data.len);
  size_t cap = event->data.len * 2 + event->type.len + event->source.len + 128;
  char *out = malloc(cap);
  if (!out) {
    event_function_string_dup(err, "out of memory");
    return false;
  }
  int n = snprintf(out, cap, "{\"type\":\"%.*s\",\"source\":\"%.*s\",\"data\":%s",
                   (int)event->type.len, event->type.ptr, (int)event->source.len,
                   event->source.ptr, json ? "" : "\"");
  size_t len = (size_t)n;
  for (size_t i = 0; i < event->data.len; i++) {
    char c = (char)event->data.ptr[i];
    if (!json && (c == '"' || c == '\\')) out[len++] = '\\';
    out[len++] = c;
  }
  len += (size_t)snprintf(out + len, cap - len, "%s}", json ? "" : "\"");
  nimbus_function_types_event_free(event);
  ret->ptr = (uint8_t *)out;
  ret->len = len;
  return true;
}
