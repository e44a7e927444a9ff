/* The pcap writer's file set: the file and its rotations, their names,
 * errors (the capture stops, relaying goes on), flushing written batches,
 * and SIGHUP (a moved file is started anew). */
#include "capture/pcap_writer_int.h"
#include "capture/settings.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void capture_pcap_rotated_name(const char *path, unsigned n, char *out, size_t size)
{
	const char *slash = strrchr(path, '/');
	const char *dot = strrchr(path, '.');

	if (n == 0) {
		snprintf(out, size, "%s", path);
	} else if (dot != NULL && dot != path && (slash == NULL || dot > slash + 1)) {
		snprintf(out, size, "%.*s.%u%s", (int)(dot - path), path, n, dot);
	} else {
		snprintf(out, size, "%s.%u", path, n);
	}
}

static void log_error(struct pcap_writer *w, const char *what, const char *then)
{
	char msg[4800];
	char name[4096];

	capture_pcap_rotated_name(w->path, w->file_no, name, sizeof(name));
	snprintf(msg, sizeof(msg), "%s the %spcap %s: %s; %s", what, w->raw ? "raw " : "", name,
		 strerror(errno), then);
	if (w->log != NULL)
		w->log(w->log_ctx, msg);
}

/* The file ends with the last batch written whole, and writing stops
 * until SIGHUP; sequence numbers go on, so a reader sees the gap. */
void pcap_report(struct pcap_writer *w, const char *what)
{
	if (w->failed)
		return;
	w->failed = 1;
	w->write_errors++;
	w->unflushed = 0;
	log_error(w, what, "the capture stops here, relaying goes on (SIGHUP tries again)");
	if (w->file.fp != NULL) {
		capture_outfile_rollback(&w->file);
		capture_outfile_close(&w->file);
	}
}

void pcap_write_head_due(struct pcap_writer *w)
{
	char comment[CAPTURE_SETTINGS_TEXT_MAX + 64] = "";
	size_t n = 0;

	if (!w->head_due || w->file.fp == NULL)
		return;
	w->head_due = false;
	if (w->settings != NULL)
		n = (size_t)snprintf(comment, sizeof(comment), "imaptap settings: %.*s",
				     (int)w->settings_len, w->settings);
	w->header_len = pcapng_write_head(w->file.fp, "imaptap " IMAPTAP_VERSION, comment,
					  n < sizeof(comment) ? n : sizeof(comment) - 1, "imaptap",
					  w->raw ? "both legs as the proxy's sockets carried them: "
						   "inbound read, outbound written"
						 : "the client leg as the client saw it: inbound from "
						   "the client, outbound from the server");
	w->written += w->header_len;
	w->unflushed += w->header_len;
}

/* Opens the current file of the set. With append, a file that still holds
 * its header whole (cut back to its last batch after an error) is written
 * on after it; otherwise the file is created anew, header first. */
int pcap_open_file(struct pcap_writer *w, bool append, char *err, size_t errlen)
{
	char name[4096];
	struct stat st;

	capture_pcap_rotated_name(w->path, w->file_no, name, sizeof(name));
	if (w->stream != NULL) {
		if (capture_outfile_open_stream(&w->file, w->stream, w->stream_ctx) != 0) {
			snprintf(err, errlen, "cannot start %.3000s: %s", w->path, strerror(errno));
			return -1;
		}
		append = false;
		goto header;
	}
	append = append && stat(name, &st) == 0 && w->header_len > 0 &&
		 (size_t)st.st_size >= w->header_len;
	/* small segments (lines) go out in big writes */
	if (capture_outfile_open(&w->file, name, append ? CAPTURE_OUTFILE_APPEND : w->mode,
				 CAPTURE_OUTFILE_BEHIND) != 0) {
		capture_outfile_error(err, errlen, w->raw ? "the raw pcap" : "the pcap", name, errno);
		return -1;
	}
	if (append) {
		w->written = (uint64_t)w->file.good;
		return 0;
	}
header:
	if (w->format == CAPTURE_PCAP_NG) {
		/* the section names the settings, which come right after */
		w->head_due = true;
		w->header_len = 0;
	} else if (pcap_dump_fopen(w->dead, w->file.fp) == NULL) {
		/* libpcap writes the file header; its dumper is the stream
		 * itself (pcap_dump_close() is fclose()), which the outfile
		 * closes */
		snprintf(err, errlen, "cannot write the pcap %.3000s: %s", name, pcap_geterr(w->dead));
		capture_outfile_close(&w->file);
		return -1;
	}
	/* the header on disk now: a file that cannot take it fails here */
	if (capture_outfile_sync(&w->file) != 0) {
		snprintf(err, errlen, "cannot write the pcap %.3000s: %s", name, strerror(errno));
		capture_outfile_close(&w->file);
		return -1;
	}
	w->written = w->header_len; /* the file header (pcapng: once written) */
	if (w->format != CAPTURE_PCAP_NG)
		w->total_bytes += sizeof(struct pcap_file_header);
	return 0;
}

void pcap_close_file(struct pcap_writer *w)
{
	if (w->file.fp == NULL)
		return;
	if (capture_outfile_close(&w->file) != 0)
		log_error(w, "cannot write", "its end is lost");
	else
		w->total_bytes += w->unflushed;
	w->unflushed = 0;
}

void pcap_files_flush(void *self)
{
	struct pcap_writer *w = self;

	if (w->file.fp == NULL || w->failed)
		return;
	pcap_write_head_due(w);
	if (capture_outfile_commit(&w->file) != 0) {
		pcap_report(w, "cannot write");
		return;
	}
	w->total_bytes += w->unflushed;
	w->unflushed = 0;
}

/* SIGHUP: a file moved away is started anew at its name (every open
 * session with a fresh handshake, as after a rotation); a file stopped by
 * an error and still in place is appended to. */
void pcap_files_reopen(void *self)
{
	struct pcap_writer *w = self;
	char name[4096], err[600];
	bool moved;

	capture_pcap_rotated_name(w->path, w->file_no, name, sizeof(name));
	if (strcmp(w->path, "-") == 0 || w->stream != NULL) {
		/* standard output: a second file header would break the stream */
		if (w->file.fp != NULL)
			pcap_files_flush(w);
		return;
	}
	moved = w->file.fp != NULL ? capture_outfile_moved(&w->file, name) : access(name, F_OK) != 0;
	if (w->file.fp != NULL && !moved) {
		pcap_files_flush(w);
		return;
	}
	pcap_close_file(w);
	/* not moved: still ours, written on after its last whole batch */
	if (pcap_open_file(w, !moved, err, sizeof(err)) != 0) {
		if (!moved)
			snprintf(err + strlen(err), sizeof(err) - strlen(err), "; it stays stopped");
		if (w->log != NULL)
			w->log(w->log_ctx, err);
		return;
	}
	/* a new file starts as a rotated one does: the settings (a SIGHUP may
	 * just have changed them), then a handshake per open session */
	if (moved && w->settings != NULL && !w->raw)
		pcap_write_settings_mark(w, w->last_ts);
	if (moved)
		for (unsigned b = 0; b < BUCKETS; b++)
			for (struct pcap_session *s = w->bucket[b]; s != NULL; s = s->next)
				pcap_handshake(w, s, w->last_ts);
	w->failed = 0;
}

void pcap_files_stats(void *self, struct capture_output_stats *stats)
{
	const struct pcap_writer *w = self;

	stats->output = w->raw ? "raw-pcap" : "pcap";
	stats->bytes = w->total_bytes;
	stats->write_errors = w->write_errors;
	stats->dropped = w->dropped;
}

/* The files of an earlier rotation this run would write over, found
 * before the first is written: refused as the first would be. */
int pcap_check_rotated(const struct pcap_writer *w, char *err, size_t errlen)
{
	char name[4096];
	struct stat st;

	for (unsigned n = 1; n < UINT_MAX; n++) {
		capture_pcap_rotated_name(w->path, n, name, sizeof(name));
		if (lstat(name, &st) != 0)
			return 0;
		if (S_ISLNK(st.st_mode) || (S_ISREG(st.st_mode) && st.st_size > 0)) {
			errno = S_ISLNK(st.st_mode) ? ELOOP : EEXIST;
			capture_outfile_error(err, errlen, "the pcap", name, errno);
			return -1;
		}
	}
	return 0;
}
