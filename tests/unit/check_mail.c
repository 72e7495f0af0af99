/* Unit tests of mail's pure part: one plain address, and the RFC 5322
 * message of an outbox row (CRLF everywhere, no header injection through
 * the subject or the kind, encoded words for a UTF-8 subject, 7bit or
 * base64 bodies). */
#include <check.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/io/mail.h"
#include "unit_main.h"

START_TEST(plain_addresses)
{
    ck_assert(mail_addr_ok("parent@example.org"));
    ck_assert(mail_addr_ok("a.b+c@sub.example.org"));
    static const char *const bad[] = {
        NULL, "", "@example.org", "parent@", "parent", "a@b@c",
        "Parent <parent@example.org>", "a@example.org, b@example.org",
        "a b@example.org", "a@example.org\r\nBcc: x@evil.test", "a\t@example.org",
        "\"a\"@example.org", "a@[127.0.0.1]", "a;b@example.org", "a\x7f@example.org",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(!mail_addr_ok(bad[i]), "accepted %s", bad[i] ? bad[i] : "NULL");
    char longest[256];
    memset(longest, 'a', 254);
    memcpy(longest + 254 - 12, "@example.org", 12);
    longest[254] = '\0';
    ck_assert(mail_addr_ok(longest));
    longest[0] = 'b';
    memmove(longest + 1, longest, 255);
    longest[255] = '\0';                       /* 255 bytes */
    ck_assert(!mail_addr_ok(longest));
}
END_TEST

static char *render(const char *subject, const char *body, const char *kind, size_t *len)
{
    struct mail_fields f = {
        .from = "studyhub <noreply@studyhub.test>", .to = "parent@example.org",
        .subject = subject, .body = body, .kind = kind,
        .date = "Mon, 07 Dec 2026 01:30:00 +0000", .message_id = "<outbox.1.2@studyhub.test>",
    };
    char err[128] = "";
    char *m = mail_render(&f, len, err, sizeof err);

    ck_assert_msg(m != NULL, "%s", err);
    ck_assert_uint_eq(strlen(m), *len);
    return m;
}

/* Every line ends in CRLF, and none is a bare CR or LF. */
static void assert_crlf(const char *m)
{
    for (const char *p = m; *p; p++) {
        if (*p == '\n')
            ck_assert_msg(p > m && p[-1] == '\r', "bare LF at %ld", (long)(p - m));
        if (*p == '\r')
            ck_assert_msg(p[1] == '\n', "bare CR at %ld", (long)(p - m));
    }
}

START_TEST(ascii_message)
{
    size_t len;
    char *m = render("Verify your email", "Hello,\nclick the link.\n", "verify", &len);

    assert_crlf(m);
    ck_assert(strncmp(m, "Date: Mon, 07 Dec 2026 01:30:00 +0000\r\n", 39) == 0);
    ck_assert_ptr_nonnull(strstr(m, "\r\nTo: parent@example.org\r\n"));
    ck_assert_ptr_nonnull(strstr(m, "\r\nSubject: Verify your email\r\n"));
    ck_assert_ptr_nonnull(strstr(m, "\r\nMessage-ID: <outbox.1.2@studyhub.test>\r\n"));
    ck_assert_ptr_nonnull(strstr(m, "\r\nContent-Transfer-Encoding: 7bit\r\n"));
    ck_assert_ptr_nonnull(strstr(m, "\r\nX-Studyhub-Kind: verify\r\n"));
    ck_assert_ptr_nonnull(strstr(m, "\r\n\r\nHello,\r\nclick the link.\r\n"));
    free(m);
}
END_TEST

START_TEST(no_header_injection)
{
    size_t len;
    char *m = render("Hi\r\nBcc: victim@example.org", "x", "a\r\nBcc: y@example.org", &len);
    const char *body = strstr(m, "\r\n\r\n");

    assert_crlf(m);
    ck_assert_ptr_nonnull(body);
    /* The subject stays one header line; the kind keeps only its safe
     * characters. */
    ck_assert_ptr_nonnull(strstr(m, "\r\nSubject: Hi  Bcc: victim@example.org\r\n"));
    ck_assert_ptr_nonnull(strstr(m, "\r\nX-Studyhub-Kind: aBccyexample.org\r\n"));
    for (const char *p = m; p < body; p = strstr(p, "\r\n") + 2)
        ck_assert_msg(strncmp(p, "Bcc:", 4) != 0, "a Bcc header was made");

    struct mail_fields f = { .from = "x@studyhub.test", .to = "p@example.org\r\nBcc: v@x.test",
                             .subject = "s", .body = "b", .date = "d", .message_id = "<m>" };
    char err[128] = "";
    ck_assert_ptr_null(mail_render(&f, &len, err, sizeof err));
    ck_assert_str_eq(err, "invalid recipient address");
    free(m);
}
END_TEST

START_TEST(utf8_subject_and_body)
{
    size_t len;
    char *m = render("Ihre Studie: Überprüfung der Einwilligung für Kinder – bitte lesen",
                     "Grüße\nvom Labor\n", "", &len);
    const char *subj = strstr(m, "\r\nSubject: =?UTF-8?B?");
    const char *body = strstr(m, "\r\n\r\n") + 4;
    unsigned char decoded[128];

    assert_crlf(m);
    ck_assert_ptr_nonnull(subj);
    /* Folded into encoded words of whole characters. */
    ck_assert_ptr_nonnull(strstr(subj, "?=\r\n =?UTF-8?B?"));
    ck_assert_ptr_nonnull(strstr(m, "\r\nContent-Transfer-Encoding: base64\r\n"));
    ck_assert_ptr_null(strstr(m, "X-Studyhub-Kind"));   /* no kind: no header */
    int n = EVP_DecodeBlock(decoded, (const unsigned char *)body,
                            (int)strcspn(body, "\r"));
    ck_assert_int_gt(n, 0);
    ck_assert_int_ge(n, 20);              /* padding decodes as zeros */
    ck_assert(memcmp(decoded, "Gr\xc3\xbc\xc3\x9f" "e\r\nvom Labor\r\n", 20) == 0);
    free(m);
}
END_TEST

static Suite *mail_suite(void)
{
    Suite *s = suite_create("mail");
    TCase *tc = tcase_create("render");
    tcase_add_test(tc, plain_addresses);
    tcase_add_test(tc, ascii_message);
    tcase_add_test(tc, no_header_injection);
    tcase_add_test(tc, utf8_subject_and_body);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_run(mail_suite());
}
