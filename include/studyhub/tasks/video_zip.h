/* video_zip: build_zipfile_of_videos as a task kind (reference/lookit.md
 * section 4; upstream #1727 #1494, whose zips exhausted disk and RAM).
 *
 * The payload (made by POST /api/v1/studies/{id}/video-zips/, see
 * domain/videos.h): {study, user, consent_only, max_video_id, hash,
 * videos}; the subject "<study>:<all|consent>:<hash>" keeps one task per
 * study, kind and file set at a time.
 *
 * States: prepare (the set again, with the permissions of now, bounded
 * by max_video_id; the requester's address) -> lookup (HEAD the zip: if
 * it exists, skip to notify) -> build -> notify (a 30-minute link into
 * mail_outbox) -> done; failures go through fail_notify (an email saying
 * so).  The zip is VIDEO_ZIP_PREFIX<study>_videos_<sha256 of the sorted
 * names>.zip (or _consent_videos_).
 *
 * Build: each video is HEADed (a stored ZIP entry needs its size up
 * front: libarchive deflates an entry of unknown size), then streamed
 * from storage (storage_get_stream) into libarchive's ZIP writer (ZIP64,
 * stored, block size 0) whose output goes to a storage_writer that
 * uploads multipart parts as they fill.  Back-pressure: bytes the writer
 * cannot take yet wait in a small overflow buffer and the video's read
 * is paused until the writer says ready.  Memory is about three parts
 * (VIDEO_ZIP_PART_MB) plus one read chunk, whatever the zip's size;
 * nothing touches the local disk.  A video missing from storage is
 * skipped and listed in MISSING_VIDEOS.txt inside the zip.  A failed or
 * interrupted build is retried from prepare (max 3 attempts); its
 * abandoned upload is aborted at once, or by abort_stale_uploads. */
#ifndef STUDYHUB_TASKS_VIDEO_ZIP_H
#define STUDYHUB_TASKS_VIDEO_ZIP_H

#include "studyhub/domain/videos.h"   /* VIDEO_ZIP_KIND, VIDEO_ZIP_PREFIX */

struct task_kind;

/* The kind (listed in tasks/background.c). */
extern const struct task_kind video_zip_kind;

#endif
