/* routerd's own replies: status lines and OpenAI-style JSON error bodies (jansson). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "worker/worker.h"

/*
 * reply_json() appends a complete response with root as its body
 * (jansson writes it).  0, or -1 if b cannot hold it.
 */
int
reply_json(struct buf *b, int status, json_t *root, int close, const char *rid)
{
	char	*body;
	int	 n;
	size_t	 blen;

	if ((body = json_dumps(root, JSON_COMPACT)) == NULL)
		return -1;
	blen = strlen(body);
	if (worker_buf_grow(b, blen + 512) == -1) {
		free(body);
		return -1;
	}
	n = snprintf(b->data + b->wpos, buf_room(b),
	    "HTTP/1.1 %d %s\r\n"
	    "Server: routerd\r\n"
	    "Content-Type: application/json\r\n"
	    "Content-Length: %zu\r\n"
	    "%s%s%s%s%s"
	    "\r\n%s\n",
	    status, reply_reason(status), blen + 1,
	    status == 503 ? "Retry-After: 1\r\n" : "",
	    close ? "Connection: close\r\n" : "",
	    rid && rid[0] ? "X-Request-Id: " : "", rid && rid[0] ? rid : "",
	    rid && rid[0] ? "\r\n" : "", body);
	free(body);
	if (n < 0 || (size_t)n >= buf_room(b))
		return -1;
	b->wpos += (size_t)n;
	return 0;
}

const char *
reply_reason(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 417: return "Expectation Failed";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	default: return "Unknown";
	}
}

static const char *
reply_type(int status)
{
	if (status == 404)
		return "not_found_error";
	if (status < 500)
		return "invalid_request_error";
	return "server_error";
}

/*
 * reply_build() appends a complete response (head and JSON body
 * {"error": {"message", "type", "param", "code"}}) to b.  x, when not
 * NULL, names the error's type and code (else by the status: the code
 * is the status) and adds header lines (each ending in CRLF).  Returns
 * 0, or -1 if b has no room (the caller closes the connection instead).
 */
int
reply_build(struct buf *b, int status, const char *msg, int close,
    const char *rid, const struct reply_extra *x)
{
	json_t	*root;
	char	*body;
	char	 ridline[WORKER_RID_MAX + 24];
	int	 n;
	size_t	 blen;

	root = json_pack("{s:{s:s, s:s, s:n, s:o}}", "error", "message", msg,
	    "type", x != NULL && x->type != NULL ? x->type : reply_type(status),
	    "param", "code", x != NULL && x->code != NULL ?
	    json_string(x->code) : json_integer(status));
	if (root == NULL)
		return -1;
	body = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	if (body == NULL)
		return -1;
	blen = strlen(body);
	ridline[0] = '\0';
	if (rid != NULL && rid[0] != '\0')
		snprintf(ridline, sizeof(ridline), "X-Request-Id: %s\r\n", rid);
	n = snprintf(b->data + b->wpos, buf_room(b),
	    "HTTP/1.1 %d %s\r\n"
	    "Server: routerd\r\n"
	    "Content-Type: application/json\r\n"
	    "Content-Length: %zu\r\n"
	    "%s%s%s%s"
	    "\r\n%s\n",
	    status, reply_reason(status), blen + 1,
	    status == 503 ? "Retry-After: 1\r\n" : "",
	    x != NULL && x->headers != NULL ? x->headers : "",
	    close ? "Connection: close\r\n" : "", ridline, body);
	free(body);
	if (n < 0 || (size_t)n >= buf_room(b))
		return -1;
	b->wpos += (size_t)n;
	return 0;
}
