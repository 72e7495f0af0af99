/* Unit tests of s3xml: the replies S3 and s3rver send (list pages, upload
 * lists, errors, copy results), entities, and hostile input (a DOCTYPE
 * with entities, malformed and truncated text, deep nesting). */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/io/s3xml.h"
#include "unit_main.h"

static int parse(const char *xml, const char *item, struct s3xml_doc *d, const char **why)
{
    return s3xml_parse(xml, strlen(xml), item, d, why);
}

START_TEST(list_page)
{
    const char *xml =
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
        "<Name>b</Name><IsTruncated>true</IsTruncated>"
        "<NextContinuationToken>tok&amp;1</NextContinuationToken>"
        "<Contents><Key>runners/a &lt;1&gt;.js</Key><LastModified>2026-01-02T03:04:05.000Z"
        "</LastModified><ETag>&quot;abc&quot;</ETag><Size>42</Size>"
        "<Owner><ID>x</ID></Owner><StorageClass>STANDARD</StorageClass></Contents>"
        "<Contents><Key>caf&#233;</Key><Size>0</Size><ETag/></Contents>"
        "</ListBucketResult>";
    struct s3xml_doc d;

    ck_assert_int_eq(parse(xml, "Contents", &d, NULL), 0);
    ck_assert_str_eq(d.root, "ListBucketResult");
    ck_assert_str_eq(s3xml_get(&d.top, "IsTruncated"), "true");
    ck_assert_str_eq(s3xml_get(&d.top, "NextContinuationToken"), "tok&1");
    ck_assert_ptr_null(s3xml_get(&d.top, "Key"));   /* items' fields stay in items */
    ck_assert_uint_eq(d.nitems, 2);
    ck_assert_str_eq(s3xml_get(&d.items[0], "Key"), "runners/a <1>.js");
    ck_assert_str_eq(s3xml_get(&d.items[0], "ETag"), "\"abc\"");
    ck_assert_str_eq(s3xml_get(&d.items[0], "Size"), "42");
    ck_assert_ptr_null(s3xml_get(&d.items[0], "ID"));     /* deeper: skipped */
    ck_assert_ptr_null(s3xml_get(&d.items[0], "Owner"));  /* not a text field */
    ck_assert_str_eq(s3xml_get(&d.items[1], "Key"), "caf\xc3\xa9");
    ck_assert_str_eq(s3xml_get(&d.items[1], "ETag"), "");
    char *k = s3xml_dup(&d.items[1], "Key");
    ck_assert_str_eq(k, "caf\xc3\xa9");
    free(k);
    s3xml_doc_free(&d);
    ck_assert_ptr_null(d.items);
}
END_TEST

START_TEST(uploads_and_results)
{
    const char *up =
        "<ListMultipartUploadsResult><Bucket>b</Bucket><IsTruncated>false</IsTruncated>"
        "<Upload><Key>z/1.zip</Key><UploadId>u1</UploadId>"
        "<Initiator><ID>i</ID><DisplayName>n</DisplayName></Initiator>"
        "<Initiated>2026-01-02T03:04:05Z</Initiated></Upload></ListMultipartUploadsResult>";
    const char *err =
        "<?xml version=\"1.0\"?>\n<Error><Code>NoSuchKey</Code>"
        "<Message>The specified key does not exist.</Message><Key>a</Key></Error>";
    const char *copy = "<CopyObjectResult><LastModified>x</LastModified>"
                       "<ETag>\"e1\"</ETag></CopyObjectResult>";
    struct s3xml_doc d;

    ck_assert_int_eq(parse(up, "Upload", &d, NULL), 0);
    ck_assert_uint_eq(d.nitems, 1);
    ck_assert_str_eq(s3xml_get(&d.items[0], "UploadId"), "u1");
    ck_assert_str_eq(s3xml_get(&d.items[0], "Initiated"), "2026-01-02T03:04:05Z");
    ck_assert_ptr_null(s3xml_get(&d.items[0], "ID"));
    s3xml_doc_free(&d);

    ck_assert_int_eq(parse(err, NULL, &d, NULL), 0);
    ck_assert_str_eq(d.root, "Error");
    ck_assert_str_eq(s3xml_get(&d.top, "Code"), "NoSuchKey");
    ck_assert_str_eq(s3xml_get(&d.top, "Message"), "The specified key does not exist.");
    ck_assert_uint_eq(d.nitems, 0);
    s3xml_doc_free(&d);

    ck_assert_int_eq(parse(copy, NULL, &d, NULL), 0);
    ck_assert_str_eq(s3xml_get(&d.top, "ETag"), "\"e1\"");
    s3xml_doc_free(&d);
}
END_TEST

START_TEST(hostile)
{
    const char *laughs =
        "<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY a \"aaaaaaaaaa\">"
        "<!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\">]><r><Code>&b;</Code></r>";
    const char *external =
        "<?xml version=\"1.0\"?><!DOCTYPE r SYSTEM \"file:///etc/passwd\"><r/>";
    const char *bad[] = { "", "<r>", "<r></s>", "<r><Code>x</r>", "not xml", "<r>&bogus;</r>",
                          "<a/><b/>" };
    struct s3xml_doc d;
    const char *why = NULL;

    ck_assert_int_eq(parse(laughs, NULL, &d, &why), -EIO);
    ck_assert_str_eq(why, "XML with a DOCTYPE");
    ck_assert_ptr_null(d.root);
    ck_assert_int_eq(parse(external, NULL, &d, &why), -EIO);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        why = NULL;
        ck_assert_msg(parse(bad[i], NULL, &d, &why) == -EIO, "accepted: %s", bad[i]);
        ck_assert_ptr_nonnull(why);
        ck_assert_ptr_null(d.root);
        ck_assert_uint_eq(d.top.nfields, 0);
    }

    /* Nesting past any S3 reply is refused, not recursed into. */
    char deep[64 * 7 + 1] = "";
    for (int i = 0; i < 32; i++)
        strcat(deep, "<a>");
    for (int i = 0; i < 32; i++)
        strcat(deep, "</a>");
    ck_assert_int_eq(parse(deep, NULL, &d, &why), -EIO);
    ck_assert_str_eq(why, "XML nested too deeply");
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("s3xml");
    TCase *tc = tcase_create("replies");

    tcase_add_test(tc, list_page);
    tcase_add_test(tc, uploads_and_results);
    tcase_add_test(tc, hostile);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_run(suite());
}
