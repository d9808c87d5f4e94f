/* test_msgpack.c - mpk_check_keys (tape/_msgpack_keys.c, tape._msgpack.check_keys): the msgpack codec's rule that map
 * keys are str, bin or int, checked on packed bytes. */
#include "test_harness.h"
#include "_msgpack_keys.h"

/* The check of the `n` bytes of the string literal `s`. */
#define KEYS(s) mpk_check_keys((s), sizeof(s) - 1)

static void scalars_and_empty_containers_pass(void)
{
    EXPECT_EQ(KEYS("\x01"), 0);            /* 1 */
    EXPECT_EQ(KEYS("\xff"), 0);            /* -1 */
    EXPECT_EQ(KEYS("\xc0"), 0);            /* nil */
    EXPECT_EQ(KEYS("\xa3" "abc"), 0);      /* "abc" */
    EXPECT_EQ(KEYS("\xcb" "\x40\x09\x21\xfb\x54\x44\x2d\x18"), 0); /* 3.14159... */
    EXPECT_EQ(KEYS("\x80"), 0);            /* {} */
    EXPECT_EQ(KEYS("\x90"), 0);            /* [] */
    EXPECT_EQ(KEYS("\xd6\xff" "\x00\x00\x00\x01"), 0); /* a timestamp */
}

static void str_bin_and_int_keys_of_every_width_pass(void)
{
    EXPECT_EQ(KEYS("\x81\xa1" "a\x01"), 0);                 /* {"a": 1} */
    EXPECT_EQ(KEYS("\x81\xd9\x01" "a\x01"), 0);             /* str8 key */
    EXPECT_EQ(KEYS("\x81\xda\x00\x01" "a\x01"), 0);         /* str16 key */
    EXPECT_EQ(KEYS("\x81\xdb\x00\x00\x00\x01" "a\x01"), 0); /* str32 key */
    EXPECT_EQ(KEYS("\x81\xc4\x01" "a\x01"), 0);             /* bin8 key */
    EXPECT_EQ(KEYS("\x81\xc5\x00\x01" "a\x01"), 0);         /* bin16 key */
    EXPECT_EQ(KEYS("\x81\xc6\x00\x00\x00\x01" "a\x01"), 0); /* bin32 key */
    EXPECT_EQ(KEYS("\x81\x07\x01"), 0);                     /* {7: 1} */
    EXPECT_EQ(KEYS("\x81\xe0\x01"), 0);                     /* {-32: 1} */
    EXPECT_EQ(KEYS("\x81\xcc\xff\x01"), 0);                 /* uint8 key */
    EXPECT_EQ(KEYS("\x81\xcf" "\xff\xff\xff\xff\xff\xff\xff\xff" "\x01"), 0);
    EXPECT_EQ(KEYS("\x81\xd3" "\x80\x00\x00\x00\x00\x00\x00\x00" "\x01"), 0);
}

static void other_keys_are_found(void)
{
    EXPECT_EQ(KEYS("\x81\xc0\x01"), 1);                 /* {None: 1} */
    EXPECT_EQ(KEYS("\x81\xc3\x01"), 1);                 /* {True: 1} */
    EXPECT_EQ(KEYS("\x81\xca\x00\x00\x00\x00\x01"), 1); /* float32 key */
    EXPECT_EQ(KEYS("\x81\x92\x01\x02\x01"), 1);         /* {(1, 2): 1} */
    EXPECT_EQ(KEYS("\x81\x80\x01"), 1);                 /* a map as key */
    EXPECT_EQ(KEYS("\x81\xd4\x01\x00\x01"), 1);         /* an ext as key */
}

static void values_are_not_keys(void)
{
    /* {"a": None, "b": [1.5, True], "c": {"d": {}}}: odd items are values */
    EXPECT_EQ(KEYS("\x83\xa1" "a\xc0\xa1" "b\x92\xca\x3f\xc0\x00\x00\xc3"
                   "\xa1" "c\x81\xa1" "d\x80"), 0);
    EXPECT_EQ(KEYS("\x92\xc0\xc3"), 0);                 /* [None, True] */
}

static void keys_are_checked_at_any_depth(void)
{
    /* [{"a": [{"b": {1.0: 2}}]}] */
    EXPECT_EQ(KEYS("\x91\x81\xa1" "a\x91\x81\xa1" "b\x81\xca\x3f\x80\x00\x00\x02"), 1);
    /* [[], {"x": 1}, {None: 1}]: after an empty array, a good map, a bad key */
    EXPECT_EQ(KEYS("\x93\x90\x81\xa1" "x\x01\x81\xc0\x01"), 1);
    /* {"a": {}, 5: 6}: the key after a value that is an empty map */
    EXPECT_EQ(KEYS("\x82\xa1" "a\x80\x05\x06"), 0);
    EXPECT_EQ(KEYS("\x82\xa1" "a\x80\xc2\x06"), 1);
}

static void broken_bytes_are_refused(void)
{
    EXPECT_EQ(mpk_check_keys("", 0), MPK_INVALID);
    EXPECT_EQ(KEYS("\xc1"), MPK_INVALID);          /* the reserved byte */
    EXPECT_EQ(KEYS("\x01\x02"), MPK_INVALID);      /* two values */
    EXPECT_EQ(KEYS("\xa3" "ab"), MPK_INVALID);     /* str cut short */
    EXPECT_EQ(KEYS("\x82\xa1" "a\x01"), MPK_INVALID); /* map missing a pair */
    EXPECT_EQ(KEYS("\xdb\xff\xff\xff\xff"), MPK_INVALID);
    EXPECT_EQ(KEYS("\xdd\xff\xff\xff\xff\x01"), MPK_INVALID);
    EXPECT_EQ(KEYS("\xdf\x00"), MPK_INVALID);      /* length cut short */
    EXPECT_EQ(KEYS("\xc9\x00\x00\x00\x02\x01" "a"), MPK_INVALID); /* ext32 data cut */
}

static void nesting_is_bounded(void)
{
    static uint8_t deep[2048];
    for (size_t i = 0; i < sizeof deep - 1; i++)
        deep[i] = 0x91; /* [[[...]]] */
    deep[sizeof deep - 1] = 0x01;
    EXPECT_EQ(mpk_check_keys(deep, sizeof deep), MPK_INVALID);
    EXPECT_EQ(mpk_check_keys(deep + sizeof deep - 1000, 1000), 0);
}

/* Random bytes, each buffer allocated to its exact length so that the
 * sanitizers catch a read past it: any answer, never a crash. */
static void random_bytes_are_read_within_bounds(void)
{
    uint64_t x = 0x9E3779B97F4A7C15u;
    for (int round = 0; round < 20000; round++) {
        size_t len = 1 + (size_t)(round % 40);
        uint8_t *buf = malloc(len);
        CHECK(buf != NULL);
        for (size_t i = 0; i < len; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17; /* xorshift64 */
            buf[i] = (uint8_t)x;
        }
        int rc = mpk_check_keys(buf, len);
        EXPECT(rc == 0 || rc == 1 || rc == MPK_INVALID);
        free(buf);
    }
}

static const th_test tests[] = {
    TEST(scalars_and_empty_containers_pass),
    TEST(str_bin_and_int_keys_of_every_width_pass),
    TEST(other_keys_are_found),
    TEST(values_are_not_keys),
    TEST(keys_are_checked_at_any_depth),
    TEST(broken_bytes_are_refused),
    TEST(nesting_is_bounded),
    TEST(random_bytes_are_read_within_bounds),
};

TEST_MAIN(tests)
