/* Byte buffers for connections: a window [rpos, wpos) inside data[0, cap). */
#ifndef LIB_BUF_H
#define LIB_BUF_H

#include <stddef.h>
#include <string.h>

struct buf {
	char	*data;
	size_t	 cap, rpos, wpos;
};

static inline size_t
buf_len(const struct buf *b)
{
	return b->wpos - b->rpos;
}

static inline size_t
buf_room(const struct buf *b)
{
	return b->cap - b->wpos;
}

/* Move the unread bytes to the front so that buf_room() is as large as it can be. */
static inline void
buf_compact(struct buf *b)
{
	if (b->rpos == 0)
		return;
	if (b->wpos > b->rpos)
		memmove(b->data, b->data + b->rpos, b->wpos - b->rpos);
	b->wpos -= b->rpos;
	b->rpos = 0;
}

/* Append n bytes; the caller checked buf_room(). */
static inline void
buf_put(struct buf *b, const void *p, size_t n)
{
	memcpy(b->data + b->wpos, p, n);
	b->wpos += n;
}

static inline void
buf_puts(struct buf *b, const char *s)
{
	buf_put(b, s, strlen(s));
}

static inline void
buf_reset(struct buf *b)
{
	b->rpos = b->wpos = 0;
}

#endif
