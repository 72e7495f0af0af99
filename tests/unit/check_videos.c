/* Unit tests of videos_parse_name: the names Pipe, the runner and the
 * bucket use, parsed from both ends (a frame id may hold '_'), and the
 * names the webhook and the reconcile must refuse. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/domain/videos.h"
#include "unit_main.h"

#define S "0b2f8a63-25b5-4b1c-9a43-57d2d7c3e4a1"
#define R "9d6f0c5e-1c0f-4b44-8c61-0a8b7e6d2f10"

START_TEST(pipe_payload_names)
{
    struct videos_name n;
    char err[160];

    ck_assert_int_eq(videos_parse_name("videoStream_" S "_1-video-consent_" R "_1714572672123_482",
                                       false, &n, err, sizeof err), 0);
    ck_assert(!n.consent);
    ck_assert_str_eq(n.study, S);
    ck_assert_str_eq(n.response, R);
    ck_assert_str_eq(n.frame, "1-video-consent");
    ck_assert_int_eq(n.ms, 1714572672123LL);
    /* The consent- prefix, upper-case uuids, a frame id with '_' and '.'. */
    ck_assert_int_eq(videos_parse_name("consent-videoStream_0B2F8A63-25B5-4B1C-9A43-57D2D7C3E4A1"
                                       "_2-my_frame.v2_" R "_1_0", false, &n, err, sizeof err), 0);
    ck_assert(n.consent);
    ck_assert_str_eq(n.study, S);
    ck_assert_str_eq(n.frame, "2-my_frame.v2");
    ck_assert_int_eq(n.ms, 1);
}
END_TEST

START_TEST(stored_names)
{
    struct videos_name n;
    char err[160];

    ck_assert_int_eq(videos_parse_name("videoStream_" S "_0-x_" R "_1714572672123_482.mp4", true,
                                       &n, err, sizeof err), 0);
    ck_assert_str_eq(n.frame, "0-x");
    ck_assert_int_eq(videos_parse_name("videoStream_" S "_0-x_" R "_1714572672123_482.webm", true,
                                       &n, err, sizeof err), 0);
    /* A stored key needs its extension; a payload has none. */
    ck_assert_int_eq(videos_parse_name("videoStream_" S "_0-x_" R "_1714572672123_482", true,
                                       &n, err, sizeof err), -1);
    ck_assert_int_eq(videos_parse_name("videoStream_" S "_0-x_" R "_1714572672123_482.mp4", false,
                                       &n, err, sizeof err), -1);
}
END_TEST

START_TEST(refused)
{
    static const char *const bad[] = {
        "",
        "videoStream",
        "videoStream_" S "_" R "_1714572672123_482",          /* no frame */
        "videoStream_" S "__" R "_1714572672123_482",         /* empty frame */
        "_" S "_f_" R "_1714572672123_482",                   /* no prefix */
        "video/Stream_" S "_f_" R "_1714572672123_482",       /* prefix with '/' */
        "videoStream_" S "_f_" R "_17145726x2123_482",        /* ms not digits */
        "videoStream_" S "_f_" R "_1234567890123456_482",     /* ms too long */
        "videoStream_" S "_f_" R "__482",                     /* no ms */
        "videoStream_" S "_f_" R "_1714572672123_",           /* no rand */
        "videoStream_" S "_f_" R "_1714572672123_4-2",        /* rand not alnum */
        "videoStream_" S "_f/g_" R "_1714572672123_482",      /* frame with '/' */
        "videoStream_" S "_f\n_" R "_1714572672123_482",      /* frame with a control */
        "videoStream_not-a-uuid-0000-0000-000000000000_f_" R "_1714572672123_482",
        "videoStream_" S "_f_9d6f0c5e-1c0f-4b44-8c61-0a8b7e6d2f1_1714572672123_482",
        "videoStream_" S "_f_" R "_1714572672123_482_extra",
    };
    struct videos_name n;
    char err[160];

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        ck_assert_msg(videos_parse_name(bad[i], false, &n, err, sizeof err) == -1,
                      "accepted \"%s\"", bad[i]);
        ck_assert_msg(err[0] != '\0', "no reason for \"%s\"", bad[i]);
    }
    /* A frame id longer than VIDEOS_FRAME_MAX. */
    char *big = malloc(2000);
    char frame[VIDEOS_FRAME_MAX + 2];
    memset(frame, 'f', sizeof frame - 1);
    frame[sizeof frame - 1] = '\0';
    snprintf(big, 2000, "videoStream_%s_%s_%s_1_2", S, frame, R);
    ck_assert_int_eq(videos_parse_name(big, false, &n, err, sizeof err), -1);
    frame[VIDEOS_FRAME_MAX] = '\0';
    snprintf(big, 2000, "videoStream_%s_%s_%s_1_2", S, frame, R);
    ck_assert_int_eq(videos_parse_name(big, false, &n, err, sizeof err), 0);
    ck_assert_int_eq((int)strlen(n.frame), VIDEOS_FRAME_MAX);
    free(big);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("videos");
    TCase *tc = tcase_create("names");
    tcase_add_test(tc, pipe_payload_names);
    tcase_add_test(tc, stored_names);
    tcase_add_test(tc, refused);
    suite_add_tcase(s, tc);
    return unit_run(s);
}
