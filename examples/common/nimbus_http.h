// Small helpers over the wit-bindgen C bindings of the wasi:http proxy world, shared by the
// example and test HTTP components. Include after "proxy.h".
#ifndef NIMBUS_HTTP_H
#define NIMBUS_HTTP_H

#include <string.h>

// Returns the request's path-with-query as a NUL-terminated string in `buf`.
static void request_path(wasi_http_types_own_incoming_request_t request, char *buf, size_t cap) {
  proxy_string_t path;
  buf[0] = 0;
  if (wasi_http_types_method_incoming_request_path_with_query(
          wasi_http_types_borrow_incoming_request(request), &path)) {
    size_t n = path.len < cap - 1 ? path.len : cap - 1;
    memcpy(buf, path.ptr, n);
    buf[n] = 0;
    proxy_string_free(&path);
  }
}

// Starts a response with one content-type header; returns the body to write into.
static wasi_http_types_own_outgoing_body_t start_response(
    wasi_http_types_own_response_outparam_t out, uint16_t status, const char *content_type) {
  wasi_http_types_own_fields_t headers = wasi_http_types_constructor_fields();
  wasi_http_types_field_name_t name;
  proxy_string_set(&name, "content-type");
  wasi_http_types_field_value_t value = {(uint8_t *)content_type, strlen(content_type)};
  wasi_http_types_header_error_t herr;
  wasi_http_types_method_fields_append(wasi_http_types_borrow_fields(headers), &name, &value, &herr);
  wasi_http_types_own_outgoing_response_t resp = wasi_http_types_constructor_outgoing_response(headers);
  wasi_http_types_method_outgoing_response_set_status_code(
      wasi_http_types_borrow_outgoing_response(resp), status);
  wasi_http_types_own_outgoing_body_t body;
  wasi_http_types_method_outgoing_response_body(wasi_http_types_borrow_outgoing_response(resp), &body);
  wasi_http_types_result_own_outgoing_response_error_code_t result = {.is_err = false};
  result.val.ok = resp;
  wasi_http_types_static_response_outparam_set(out, &result);
  return body;
}

// Writes all of `data` to `stream` (blocking_write_and_flush takes at most 4096 bytes a call).
static void write_all(wasi_io_streams_own_output_stream_t stream, const uint8_t *data, size_t len) {
  while (len > 0) {
    size_t n = len < 4096 ? len : 4096;
    proxy_list_u8_t chunk = {(uint8_t *)data, n};
    wasi_io_streams_stream_error_t err;
    if (!wasi_io_streams_method_output_stream_blocking_write_and_flush(
            wasi_io_streams_borrow_output_stream(stream), &chunk, &err)) {
      return;
    }
    data += n;
    len -= n;
  }
}

// Sends a whole response.
static void respond(wasi_http_types_own_response_outparam_t out, uint16_t status,
                    const char *content_type, const char *data, size_t len) {
  wasi_http_types_own_outgoing_body_t body = start_response(out, status, content_type);
  wasi_http_types_own_output_stream_t stream;
  if (wasi_http_types_method_outgoing_body_write(wasi_http_types_borrow_outgoing_body(body), &stream)) {
    write_all(stream, (const uint8_t *)data, len);
    wasi_io_streams_output_stream_drop_own(stream);
  }
  wasi_http_types_error_code_t err;
  wasi_http_types_static_outgoing_body_finish(body, NULL, &err);
}

#endif
