// The smallest useful HTTP function: a wasi:http/incoming-handler in C.
// GET /hello answers "hello from nimbus"; GET /hello/NAME answers "hello, NAME".
// Runs unchanged on `nimbus` and on `wasmtime serve`.
#include <stdio.h>
#include "proxy.h"
#include "../common/nimbus_http.h"

void exports_wasi_http_incoming_handler_handle(
    exports_wasi_http_incoming_handler_own_incoming_request_t request,
    exports_wasi_http_incoming_handler_own_response_outparam_t response_out) {
  char path[512];
  request_path(request, path, sizeof path);
  wasi_http_types_incoming_request_drop_own(request);

  char body[600];
  const char *name = strncmp(path, "/hello/", 7) == 0 ? path + 7 : NULL;
  int n = name && *name ? snprintf(body, sizeof body, "hello, %s\n", name)
                        : snprintf(body, sizeof body, "hello from nimbus\n");
  printf("served %s\n", path);
  fflush(stdout);
  respond(response_out, 200, "text/plain; charset=utf-8", body, (size_t)n);
}
