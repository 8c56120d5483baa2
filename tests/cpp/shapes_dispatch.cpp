// End-to-end test of the dext header generated for tests/schemas/shapes.dextlink.
//
// A user client implements every `shapes::Handle…` handler and routes
// ExternalMethod through `shapes::ExternalMethod`; every call goes through
// `dextlink_shim::CallBuilder::invoke`, which builds the
// IOUserClientMethodArguments the way the kernel would and applies the return
// rules of docs/driverkit.md §3.2/§3.3.  The test checks that every method
// round-trips with the typed values the schema declares, that every malformed
// call is refused before any handler runs, that completions carry the typed
// payload, and that ClientMemory answers CopyClientMemoryForType as §5 says.
//
// Built by tests/tests/cpp_dispatch.rs, which writes the generated header
// next to it as "Shapes.h" and compiles with
//     -DDEXTLINK_DRIVERKIT_SHIM -I schema/shim -I <scratch dir>
// (plus -fsanitize=address,undefined).  Prints
// "shapes-dispatch: N passed, M failed" and exits non-zero on any failure.
// Section numbers refer to docs/driverkit.md.

#include "Shapes.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

using dextlink_shim::CallBuilder;
using shapes::Config;
using shapes::Mode;
using shapes::Selector;
using shapes::Trim;

// ---------------------------------------------------------------------------
// Checking
// ---------------------------------------------------------------------------

// CHECK and CHECK_EQ, and the pass/fail counts.
#include <dextlink/testing.h>

// ---------------------------------------------------------------------------
// What the handlers saw, and what they are told to do
// ---------------------------------------------------------------------------

struct Seen {
    unsigned calls[shapes::kSelectorCount];
    OSObject* target;
    // scalars
    uint8_t a;
    int32_t b;
    uint64_t c;
    bool on;
    Mode mode;
    // structs / start
    Config config;
    bool configEnabled;  // read as a bool: UBSan flags an unvalidated byte
    // mixed
    uint32_t index;
    shapes::Point point;
    // wide
    uint64_t wide[16];
    // big_in / big_out
    uint64_t bigFirst;
    uint64_t bigLast;
    uint64_t seed;
    // write_blob
    uint32_t blobLength;
    uint64_t blobHash;
    // read_log
    uint32_t maxLines;
    // set_key
    uint8_t key[16];
    // async
    bool hadCompletion;
    uintptr_t completionPtr;
    uint64_t completionRef[8];
    uint8_t channel;
    // raw
    uint64_t rawSelector;
    uint32_t rawScalarInCount;
    uint64_t rawX;
    uint32_t rawScalarOutCount;
    bool rawHadStructIn;
    // maybe_async
    uint32_t maybeX;
};

struct Behaviour {
    kern_return_t ret;     // what every handler returns (outputs are produced anyway)
    uint32_t nameLength;   // what HandleReadName reports in *name_length
    bool logNull;          // HandleReadLog leaves *log NULL
};

static Seen g_seen;
static Behaviour g_do;
static OSAction* g_pending = nullptr;  // a completion a handler retained

static void reset()
{
    memset(&g_seen, 0, sizeof(g_seen));
    g_do.ret = kIOReturnSuccess;
    g_do.nameLength = 11;
    g_do.logNull = false;
}

static unsigned totalCalls()
{
    unsigned n = 0;
    for (unsigned i = 0; i < shapes::kSelectorCount; i++) {
        n += g_seen.calls[i];
    }
    return n;
}

static unsigned& calls(Selector s)
{
    return g_seen.calls[static_cast<uint32_t>(s)];
}

static uint64_t sel(Selector s)
{
    return static_cast<uint64_t>(s);
}

// A signed value as it travels in a 64-bit scalar slot: sign-extended.
static uint64_t sx(int64_t v)
{
    return static_cast<uint64_t>(v);
}

static uint64_t fnv1a(const uint8_t* bytes, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= bytes[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static uint8_t blobByte(size_t i, size_t len)
{
    return static_cast<uint8_t>((i * 31u + len + (i >> 8)) & 0xffu);
}

static void recordCompletion(OSAction* completion)
{
    g_seen.hadCompletion = completion != nullptr;
    g_seen.completionPtr = reinterpret_cast<uintptr_t>(completion);
    if (completion != nullptr && completion->GetReference() != nullptr) {
        memcpy(g_seen.completionRef, completion->GetReference(), sizeof(g_seen.completionRef));
    }
}

// Deterministic outputs, computed the same way by the handlers and the checks.
static uint64_t scalarsSum(uint8_t a, uint64_t c, bool on, Mode mode)
{
    return a + c + (on ? 1000000u : 0u) + static_cast<uint64_t>(mode) * 1000u;
}
static int64_t scalarsNeg(int32_t b)
{
    return static_cast<int64_t>(b) * 3 - 7;
}
static uint64_t wideOut(uint64_t a, unsigned i)
{
    return ~a + i;
}
static uint64_t bigWord(uint64_t seed, size_t i)
{
    return seed ^ (static_cast<uint64_t>(i) * 0x100000001ULL);
}
static int32_t measureValue(uint8_t channel)
{
    return -1000 - 3 * static_cast<int32_t>(channel);
}
static uint64_t sampleValue(unsigned i)
{
    return 0xFEDC000000000000ULL | (static_cast<uint64_t>(i) * 0x1111u);
}
static const char kName[] = "shapes-dext";  // 11 bytes without the NUL

static Config validConfig()
{
    Config c;
    memset(&c, 0, sizeof(c));
    c.origin.x = -5;
    c.origin.y = 6;
    for (int i = 0; i < 4; i++) {
        c.corners[i].x = i * 10;
        c.corners[i].y = -i * 10 - 1;
    }
    memcpy(c.name, "config-name", 11);
    c.mode = Mode::Auto;
    c.enabled = true;
    c.trim = Trim::Down;
    c.gain = 77;
    c.serial = 0x1122334455667788ULL;
    return c;
}

// ---------------------------------------------------------------------------
// The handlers the dext implements
// ---------------------------------------------------------------------------

namespace shapes {

kern_return_t HandleScalars(OSObject* target, uint8_t a, int32_t b, uint64_t c, bool on, Mode mode,
                            uint64_t* sum, int64_t* neg)
{
    calls(Selector::Scalars)++;
    g_seen.target = target;
    g_seen.a = a;
    g_seen.b = b;
    g_seen.c = c;
    g_seen.on = on;
    g_seen.mode = mode;
    *sum = scalarsSum(a, c, on, mode);
    *neg = scalarsNeg(b);
    return g_do.ret;
}

kern_return_t HandleStructs(OSObject* target, const Config& config, Config* echo)
{
    calls(Selector::Structs)++;
    g_seen.target = target;
    g_seen.config = config;
    g_seen.configEnabled = config.enabled;
    *echo = config;
    echo->gain = config.gain + 1;
    echo->serial = ~config.serial;
    echo->enabled = !config.enabled;
    return g_do.ret;
}

kern_return_t HandleMixed(OSObject* target, uint32_t index, const Point& point, bool* ok, Config* config)
{
    calls(Selector::Mixed)++;
    g_seen.target = target;
    g_seen.index = index;
    g_seen.point = point;
    *ok = (index % 2) == 1;
    config->origin = point;
    for (uint32_t i = 0; i < 4; i++) {
        config->corners[i].x = static_cast<int32_t>(index);
        config->corners[i].y = -static_cast<int32_t>(i);
    }
    config->name[0] = 'm';
    config->mode = Mode::On;
    config->enabled = true;
    config->trim = Trim::Up;
    config->gain = index * 7;
    config->serial = 0xABCDEF;
    return g_do.ret;
}

kern_return_t HandleWide(OSObject* target, uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4,
                         uint64_t a5, uint64_t a6, uint64_t a7, uint64_t a8, uint64_t a9, uint64_t a10,
                         uint64_t a11, uint64_t a12, uint64_t a13, uint64_t a14, uint64_t a15, uint64_t* b0,
                         uint64_t* b1, uint64_t* b2, uint64_t* b3, uint64_t* b4, uint64_t* b5, uint64_t* b6,
                         uint64_t* b7, uint64_t* b8, uint64_t* b9, uint64_t* b10, uint64_t* b11,
                         uint64_t* b12, uint64_t* b13, uint64_t* b14, uint64_t* b15)
{
    calls(Selector::Wide)++;
    g_seen.target = target;
    const uint64_t in[16] = {a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15};
    uint64_t* out[16] = {b0, b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12, b13, b14, b15};
    for (unsigned i = 0; i < 16; i++) {
        g_seen.wide[i] = in[i];
        *out[i] = wideOut(in[i], i);
    }
    return g_do.ret;
}

kern_return_t HandleBigIn(OSObject* target, const Big& big, uint64_t* checksum)
{
    calls(Selector::BigIn)++;
    g_seen.target = target;
    g_seen.bigFirst = big.words[0];
    g_seen.bigLast = big.words[599];
    uint64_t sum = 0;
    for (size_t i = 0; i < 600; i++) {
        sum += big.words[i] * (i + 1);
    }
    *checksum = sum;
    return g_do.ret;
}

kern_return_t HandleBigOut(OSObject* target, uint64_t seed, Big* big)
{
    calls(Selector::BigOut)++;
    g_seen.target = target;
    g_seen.seed = seed;
    for (size_t i = 0; i < 600; i++) {
        big->words[i] = bigWord(seed, i);
    }
    return g_do.ret;
}

kern_return_t HandleWriteBlob(OSObject* target, const uint8_t* data, uint32_t data_length, uint32_t* written)
{
    calls(Selector::WriteBlob)++;
    g_seen.target = target;
    g_seen.blobLength = data_length;
    g_seen.blobHash = fnv1a(data, data_length);  // reads every byte (ASan checks the bounds)
    *written = data_length;
    return g_do.ret;
}

kern_return_t HandleReadName(OSObject* target, uint8_t* name, uint32_t* name_length)
{
    calls(Selector::ReadName)++;
    g_seen.target = target;
    // The buffer holds NAME_LEN bytes: fill all of them, report g_do.nameLength.
    for (uint32_t i = 0; i < NAME_LEN; i++) {
        name[i] = i < sizeof(kName) - 1 ? static_cast<uint8_t>(kName[i]) : static_cast<uint8_t>('#');
    }
    *name_length = g_do.nameLength;
    return g_do.ret;
}

kern_return_t HandleReadLog(OSObject* target, uint32_t max_lines, OSData** log)
{
    calls(Selector::ReadLog)++;
    g_seen.target = target;
    g_seen.maxLines = max_lines;
    if (g_do.logNull) {
        return g_do.ret;
    }
    OSData* data = OSData::withCapacity(0);
    if (data == nullptr) {
        return kIOReturnNoMemory;
    }
    for (uint32_t i = 0; i < max_lines; i++) {
        char line[32];
        int n = snprintf(line, sizeof(line), "line %u\n", i);
        data->appendBytes(line, static_cast<size_t>(n));
    }
    *log = data;
    return g_do.ret;
}

kern_return_t HandleSetKey(OSObject* target, const uint8_t* key)
{
    calls(Selector::SetKey)++;
    g_seen.target = target;
    memcpy(g_seen.key, key, 16);
    return g_do.ret;
}

// Async handlers retain the completion (it is only valid during the call,
// §4.1-2) and finish later through shapes::Complete… (see completePending).
static void keep(OSAction* completion)
{
    if (g_do.ret == kIOReturnSuccess && completion != nullptr) {
        completion->retain();
        g_pending = completion;
    }
}

kern_return_t HandlePing(OSObject* target, OSAction* completion)
{
    calls(Selector::Ping)++;
    g_seen.target = target;
    recordCompletion(completion);
    keep(completion);
    return g_do.ret;
}

kern_return_t HandleMeasure(OSObject* target, uint8_t channel, OSAction* completion)
{
    calls(Selector::Measure)++;
    g_seen.target = target;
    g_seen.channel = channel;
    recordCompletion(completion);
    keep(completion);
    return g_do.ret;
}

kern_return_t HandleSample(OSObject* target, OSAction* completion)
{
    calls(Selector::Sample)++;
    g_seen.target = target;
    recordCompletion(completion);
    keep(completion);
    return g_do.ret;
}

kern_return_t HandleStart(OSObject* target, const Config& config, uint32_t* ticket, OSAction* completion)
{
    calls(Selector::Start)++;
    g_seen.target = target;
    g_seen.config = config;
    g_seen.configEnabled = config.enabled;
    recordCompletion(completion);
    *ticket = config.gain + 42;
    keep(completion);
    return g_do.ret;
}

// #[unchecked]: no table checks; the handler validates by hand.
kern_return_t HandleRaw(OSObject* target, IOUserClientMethodArguments* arguments)
{
    calls(Selector::Raw)++;
    g_seen.target = target;
    g_seen.rawSelector = arguments->selector;
    g_seen.rawScalarInCount = arguments->scalarInputCount;
    g_seen.rawScalarOutCount = arguments->scalarOutputCount;
    g_seen.rawHadStructIn = arguments->structureInput != nullptr || arguments->structureInputDescriptor != nullptr;
    recordCompletion(arguments->completion);
    if (arguments->scalarInputCount != 1 || arguments->scalarOutputCount != 1 ||
        arguments->scalarInput == nullptr || arguments->scalarOutput == nullptr) {
        return kIOReturnBadArgument;
    }
    g_seen.rawX = arguments->scalarInput[0];
    arguments->scalarOutput[0] = arguments->scalarInput[0] * 3;
    return g_do.ret;
}

kern_return_t HandleMaybeAsync(OSObject* target, uint32_t x, OSAction* completion)
{
    calls(Selector::MaybeAsync)++;
    g_seen.target = target;
    g_seen.maybeX = x;
    recordCompletion(completion);
    // Completes at once when it can (a NULL completion is ignored by the sender).
    CompleteMaybeAsync(OSDynamicCast(IOUserClient, target), completion, kIOReturnSuccess);
    return g_do.ret;
}

}  // namespace shapes

// ---------------------------------------------------------------------------
// The user client
// ---------------------------------------------------------------------------

class TestUserClient : public IOUserClient {
public:
    shapes::ClientMemory clientMemory;

    kern_return_t ExternalMethod(uint64_t selector, IOUserClientMethodArguments* arguments,
                                 const IOUserClientMethodDispatch* dispatch, OSObject* target,
                                 void* reference) override
    {
        (void)dispatch;
        (void)target;
        (void)reference;
        return shapes::ExternalMethod(this, selector, arguments);
    }

    kern_return_t CopyClientMemoryForType(uint64_t type, uint64_t* options, IOMemoryDescriptor** memory) override
    {
        return clientMemory.Copy(type, options, memory);
    }

protected:
    void free() override
    {
        clientMemory.Release();
        IOUserClient::free();
    }
};

static TestUserClient* g_client = nullptr;

static bool allZero(const uint64_t* values, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (values[i] != 0) {
            return false;
        }
    }
    return true;
}

static bool bytesZero(const uint8_t* bytes, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (bytes[i] != 0) {
            return false;
        }
    }
    return true;
}

// A call that must be refused with `expected` before any handler runs: no
// handler called, no scalar outputs, no completion retained.
#define EXPECT_REFUSED(call, expected)                                           \
    do {                                                                         \
        unsigned before_ = totalCalls();                                         \
        OSAction* pendingBefore_ = g_pending;                                    \
        IOReturn kr_ = (call).invoke(g_client);                                  \
        CHECK_EQ(kr_, (expected));                                               \
        CHECK_EQ((call).outStatus, (expected));                                  \
        CHECK_EQ(totalCalls(), before_);                                         \
        CHECK(allZero((call).outScalars, 16));                                   \
        CHECK(g_pending == pendingBefore_);                                      \
        CHECK(!(call).outInputModified);                                         \
    } while (0)

// ---------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------

static void testScalars()
{
    struct Case {
        uint8_t a;
        int32_t b;
        uint64_t c;
        bool on;
        Mode mode;
    };
    const Case cases[] = {
        {0, -40, 1, false, Mode::Off},
        {255, 125, 65536, true, Mode::Auto},
        {7, 0, 1000, true, Mode::On},
        {1, -1, 2, false, Mode::Auto},
    };
    for (const Case& k : cases) {
        reset();
        const uint64_t in[5] = {k.a, sx(k.b), k.c, k.on ? 1u : 0u, static_cast<uint64_t>(k.mode)};
        CallBuilder call(sel(Selector::Scalars));
        call.scalarsIn(in, 5).scalarsOut(2);
        CHECK_EQ(call.invoke(g_client), kIOReturnSuccess);
        CHECK_EQ(calls(Selector::Scalars), 1);
        CHECK(g_seen.target == g_client);
        CHECK_EQ(g_seen.a, k.a);
        CHECK_EQ(g_seen.b, k.b);  // both sign-extend through the cast: -40 == -40
        CHECK(g_seen.b == k.b);
        CHECK_EQ(g_seen.c, k.c);
        CHECK(g_seen.on == k.on);
        CHECK(g_seen.mode == k.mode);
        CHECK_EQ(call.outScalarCount, 2);
        CHECK_EQ(call.outScalars[0], scalarsSum(k.a, k.c, k.on, k.mode));
        CHECK_EQ(call.outScalars[1], sx(scalarsNeg(k.b)));  // i64 output sign-extended
    }
    // Mode::Auto is 0xff, and arrives as such.
    {
        reset();
        const uint64_t in[5] = {1, sx(-40), 1, 1, 0xff};
        CallBuilder call(sel(Selector::Scalars));
        call.scalarsIn(in, 5).scalarsOut(2);
        CHECK_EQ(call.invoke(g_client), kIOReturnSuccess);
        CHECK(g_seen.mode == Mode::Auto);
        CHECK_EQ(static_cast<uint8_t>(g_seen.mode), 0xff);
        CHECK_EQ(g_seen.b, -40);
        CHECK_EQ(call.outScalars[1], 0xFFFFFFFFFFFFFF81ULL);  // -127
    }
}

static void testStructs()
{
    reset();
    const Config in = validConfig();
    CallBuilder call(sel(Selector::Structs));
    call.structIn(&in, sizeof(in)).structOut(sizeof(Config));
    CHECK_EQ(call.invoke(g_client), kIOReturnSuccess);
    CHECK_EQ(calls(Selector::Structs), 1);
    CHECK(g_seen.target == g_client);
    CHECK(memcmp(&g_seen.config, &in, sizeof(in)) == 0);
    CHECK(g_seen.configEnabled);
    CHECK(g_seen.config.mode == Mode::Auto);
    CHECK(g_seen.config.trim == Trim::Down);
    CHECK_EQ(g_seen.config.corners[3].y, -31);
    CHECK_EQ(call.outStructSize, sizeof(Config));
    Config echo;
    memcpy(&echo, call.outStructBytes(), sizeof(echo));
    CHECK_EQ(echo.gain, 78);
    CHECK_EQ(echo.serial, ~0x1122334455667788ULL);
    CHECK(!echo.enabled);
    CHECK(echo.mode == Mode::Auto);
    CHECK(echo.trim == Trim::Down);
    CHECK_EQ(echo.origin.x, -5);
    CHECK(memcmp(echo.name, "config-name", 11) == 0);
    CHECK(!call.outInputModified);

    // Edge values of every validated field are accepted.
    const Mode modes[] = {Mode::Off, Mode::On, Mode::Auto};
    const Trim trims[] = {Trim::Down, Trim::Level, Trim::Up};
    for (Mode m : modes) {
        for (Trim t : trims) {
            for (int e = 0; e < 2; e++) {
                reset();
                Config c = validConfig();
                c.mode = m;
                c.trim = t;
                c.enabled = e == 1;
                CallBuilder cb(sel(Selector::Structs));
                cb.structIn(&c, sizeof(c)).structOut(sizeof(Config));
                CHECK_EQ(cb.invoke(g_client), kIOReturnSuccess);
                CHECK(g_seen.config.mode == m);
                CHECK(g_seen.config.trim == t);
                CHECK(g_seen.configEnabled == (e == 1));
            }
        }
    }
}

static void testMixed()
{
    for (uint32_t index = 0; index < 4; index++) {
        reset();
        const uint64_t in[1] = {index};
        const shapes::Point p = {-7 - static_cast<int32_t>(index), 9};
        CallBuilder call(sel(Selector::Mixed));
        call.scalarsIn(in, 1).structIn(&p, sizeof(p)).scalarsOut(1).structOut(sizeof(Config));
        CHECK_EQ(call.invoke(g_client), kIOReturnSuccess);
        CHECK_EQ(calls(Selector::Mixed), 1);
        CHECK_EQ(g_seen.index, index);
        CHECK_EQ(g_seen.point.x, p.x);
        CHECK_EQ(g_seen.point.y, 9);
        CHECK_EQ(call.outScalarCount, 1);
        CHECK_EQ(call.outScalars[0], index % 2);
        CHECK_EQ(call.outStructSize, sizeof(Config));
        Config out;
        memcpy(&out, call.outStructBytes(), sizeof(out));
        CHECK_EQ(out.origin.x, p.x);
        CHECK_EQ(out.corners[2].x, index);
        CHECK_EQ(out.corners[2].y, -2);
        CHECK(out.mode == Mode::On);
        CHECK(out.trim == Trim::Up);
        CHECK_EQ(out.gain, index * 7);
        CHECK_EQ(out.serial, 0xABCDEF);
    }
}

static void testWide()
{
    reset();
    uint64_t in[16];
    for (unsigned i = 0; i < 16; i++) {
        in[i] = 0x0123456789abcdefULL * (i + 1);
    }
    in[15] = UINT64_MAX;
    in[0] = 0;
    CallBuilder call(sel(Selector::Wide));
    call.scalarsIn(in, 16).scalarsOut(16);
    CHECK_EQ(call.invoke(g_client), kIOReturnSuccess);
    CHECK_EQ(calls(Selector::Wide), 1);
    CHECK_EQ(call.outScalarCount, 16);
    for (unsigned i = 0; i < 16; i++) {
        CHECK_EQ(g_seen.wide[i], in[i]);
        CHECK_EQ(call.outScalars[i], wideOut(in[i], i));
    }
}

static void testBig()
{
    // big_in: 4800 bytes > 4096 travel as a descriptor (§3.2-5).
    {
        reset();
        shapes::Big big;
        uint64_t expect = 0;
        for (size_t i = 0; i < 600; i++) {
            big.words[i] = static_cast<uint64_t>(i) * 0x9E3779B97F4A7C15ULL + 1;
            expect += big.words[i] * (i + 1);
        }
        CallBuilder call(sel(Selector::BigIn));
        call.structIn(&big, sizeof(big)).scalarsOut(1);
        CHECK_EQ(call.invoke(g_client), kIOReturnSuccess);
        CHECK_EQ(calls(Selector::BigIn), 1);
        CHECK_EQ(g_seen.bigFirst, big.words[0]);
        CHECK_EQ(g_seen.bigLast, big.words[599]);
        CHECK_EQ(call.outScalars[0], expect);
        CHECK(!call.outInputModified);
    }
    // big_out: a 4800-byte output buffer arrives as a writable descriptor (§3.3-2).
    {
        reset();
        shapes::Big appBig;
        memset(&appBig, 0, sizeof(appBig));
        const uint64_t in[1] = {0x1234};
        CallBuilder call(sel(Selector::BigOut));
        call.scalarsIn(in, 1).structOut(sizeof(appBig), &appBig);
        CHECK_EQ(call.invoke(g_client), kIOReturnSuccess);
        CHECK_EQ(calls(Selector::BigOut), 1);
        CHECK_EQ(g_seen.seed, 0x1234);
        CHECK_EQ(call.outStructSize, 4800);
        bool ok = true;
        for (size_t i = 0; i < 600; i++) {
            ok = ok && appBig.words[i] == bigWord(0x1234, i);
        }
        CHECK(ok);
        CHECK_EQ(appBig.words[599], bigWord(0x1234, 599));
    }
}

static void testWriteBlob()
{
    const size_t sizes[] = {1, 2, 4095, 4096, 4097, 65535, 65536};
    for (size_t n : sizes) {
        reset();
        uint8_t* data = static_cast<uint8_t*>(malloc(n));
        for (size_t i = 0; i < n; i++) {
            data[i] = blobByte(i, n);
        }
        CallBuilder call(sel(Selector::WriteBlob));
        call.structIn(data, n).scalarsOut(1);
        CHECK_EQ(call.invoke(g_client), kIOReturnSuccess);
        CHECK_EQ(calls(Selector::WriteBlob), 1);
        CHECK_EQ(g_seen.blobLength, n);
        CHECK_EQ(g_seen.blobHash, fnv1a(data, n));
        CHECK_EQ(call.outScalars[0], n);
        CHECK(!call.outInputModified);
        free(data);
    }
}

static void testReadName()
{
    // A shorter name than the capacity: the client sees that length (§3.3-1).
    {
        reset();
        CallBuilder call(sel(Selector::ReadName));
        call.structOut(shapes::NAME_LEN);
        CHECK_EQ(call.invoke(g_client), kIOReturnSuccess);
        CHECK_EQ(calls(Selector::ReadName), 1);
        CHECK_EQ(call.outStructSize, 11);
        CHECK(memcmp(call.outStructBytes(), kName, 11) == 0);
        CHECK(bytesZero(call.outStructBytes() + 11, shapes::NAME_LEN - 11));
    }
    const uint32_t lengths[] = {0, 1, 31, 32};
    for (uint32_t len : lengths) {
        reset();
        g_do.nameLength = len;
        CallBuilder call(sel(Selector::ReadName));
        call.structOut(shapes::NAME_LEN);
        CHECK_EQ(call.invoke(g_client), kIOReturnSuccess);
        CHECK_EQ(call.outStructSize, len);
        CHECK(bytesZero(call.outStructBytes() + len, shapes::NAME_LEN - len));
        if (len == 32) {
            CHECK_EQ(call.outStructBytes()[31], '#');
        }
    }
}

static void testReadLog()
{
    const uint32_t counts[] = {0, 3, 1000};
    for (uint32_t lines : counts) {
        reset();
        const uint64_t in[1] = {lines};
        CallBuilder call(sel(Selector::ReadLog));
        call.scalarsIn(in, 1).structOutVariable();
        CHECK_EQ(call.invoke(g_client), kIOReturnSuccess);
        CHECK_EQ(calls(Selector::ReadLog), 1);
        CHECK_EQ(g_seen.maxLines, lines);
        // The expected text.
        size_t expectLen = 0;
        for (uint32_t i = 0; i < lines; i++) {
            char line[32];
            expectLen += static_cast<size_t>(snprintf(line, sizeof(line), "line %u\n", i));
        }
        CHECK_EQ(call.outVarSize(), expectLen);
        CHECK_EQ(call.outStructSize, expectLen);
        if (lines == 3) {
            CHECK(call.outVarBytes() != nullptr && memcmp(call.outVarBytes(), "line 0\nline 1\nline 2\n", 21) == 0);
        }
        if (lines == 1000) {
            CHECK(expectLen > 4096);
            const char* bytes = static_cast<const char*>(call.outVarBytes());
            CHECK(bytes != nullptr && memcmp(bytes + expectLen - 9, "line 999\n", 9) == 0);
        }
    }
}

static void testSetKey()
{
    reset();
    uint8_t key[16];
    for (unsigned i = 0; i < 16; i++) {
        key[i] = static_cast<uint8_t>(0xA0 + i);
    }
    CallBuilder call(sel(Selector::SetKey));
    call.structIn(key, sizeof(key));
    CHECK_EQ(call.invoke(g_client), kIOReturnSuccess);
    CHECK_EQ(calls(Selector::SetKey), 1);
    CHECK(memcmp(g_seen.key, key, 16) == 0);
}

// The app's async reference: [0] is overwritten by the kernel, [1]/[2] are the
// callback and refcon (§4.3-2).
static const uint64_t kAsyncRef[3] = {0, 0xC0FFEE, 0xBEEF};

static void checkReferenceDelivered()
{
    CHECK_EQ(g_seen.completionRef[0], dextlink_shim::kShimWakePort | dextlink_shim::kIOUCAsync64Flag);
    CHECK_EQ(g_seen.completionRef[1], 0xC0FFEE);
    CHECK_EQ(g_seen.completionRef[2], 0xBEEF);
}

// The retained completion, after the call returned: only the handler's
// reference is left (the kernel's was dropped, §4.1-2).
static OSAction* takePending()
{
    OSAction* a = g_pending;
    g_pending = nullptr;
    CHECK(a != nullptr);
    if (a != nullptr) {
        CHECK_EQ(a->getRetainCount(), 1);
    }
    return a;
}

static void testAsync()
{
    // ping: no values.
    {
        reset();
        CallBuilder call(sel(Selector::Ping));
        call.withCompletion(kAsyncRef, 3);
        const uint32_t before = g_client->completion_count;
        CHECK_EQ(call.invoke(g_client), kIOReturnSuccess);
        CHECK_EQ(calls(Selector::Ping), 1);
        CHECK(g_seen.hadCompletion);
        checkReferenceDelivered();
        CHECK_EQ(g_client->completion_count, before);  // not completed yet
        OSAction* a = takePending();
        if (a != nullptr) {
            shapes::CompletePing(g_client, a, kIOReturnAborted);
            CHECK_EQ(g_client->completion_count, before + 1);
            CHECK_EQ(g_client->last_completion_status, kIOReturnAborted);
            CHECK_EQ(g_client->last_completion_count, 0);
            CHECK(g_client->last_completion_action == a);
            CHECK(allZero(g_client->last_completion_data, 16));
            a->release();
        }
    }
    // measure: one i32, sign-extended in its 64-bit slot.
    const uint8_t channels[] = {0, 5, 7};
    for (uint8_t ch : channels) {
        reset();
        const uint64_t in[1] = {ch};
        CallBuilder call(sel(Selector::Measure));
        call.scalarsIn(in, 1).withCompletion(kAsyncRef, 3);
        const uint32_t before = g_client->completion_count;
        CHECK_EQ(call.invoke(g_client), kIOReturnSuccess);
        CHECK_EQ(calls(Selector::Measure), 1);
        CHECK_EQ(g_seen.channel, ch);
        checkReferenceDelivered();
        OSAction* a = takePending();
        if (a != nullptr) {
            shapes::CompleteMeasure(g_client, a, kIOReturnSuccess, measureValue(ch));
            CHECK_EQ(g_client->completion_count, before + 1);
            CHECK_EQ(g_client->last_completion_status, kIOReturnSuccess);
            CHECK_EQ(g_client->last_completion_count, 1);
            CHECK_EQ(g_client->last_completion_data[0], sx(measureValue(ch)));
            CHECK_EQ(g_client->last_completion_data[0] >> 32, 0xFFFFFFFFu);  // negative: sign-extended
            CHECK(allZero(g_client->last_completion_data + 1, 15));
            CHECK(g_client->last_completion_action == a);
            a->release();
        }
    }
    // sample: sixteen values.
    {
        reset();
        CallBuilder call(sel(Selector::Sample));
        call.withCompletion();
        const uint32_t before = g_client->completion_count;
        CHECK_EQ(call.invoke(g_client), kIOReturnSuccess);
        CHECK_EQ(calls(Selector::Sample), 1);
        OSAction* a = takePending();
        if (a != nullptr) {
            shapes::CompleteSample(g_client, a, kIOReturnSuccess, sampleValue(0), sampleValue(1), sampleValue(2),
                                   sampleValue(3), sampleValue(4), sampleValue(5), sampleValue(6), sampleValue(7),
                                   sampleValue(8), sampleValue(9), sampleValue(10), sampleValue(11),
                                   sampleValue(12), sampleValue(13), sampleValue(14), sampleValue(15));
            CHECK_EQ(g_client->completion_count, before + 1);
            CHECK_EQ(g_client->dropped_completion_count, 0);
            CHECK_EQ(g_client->last_completion_count, 16);
            for (unsigned i = 0; i < 16; i++) {
                CHECK_EQ(g_client->last_completion_data[i], sampleValue(i));
            }
            a->release();
        }
    }
    // start: immediate scalar output plus a typed completion (Mode, Trim, bool).
    struct StartCase {
        Mode status;
        Trim trim;
        bool done;
        uint64_t expect[3];
    };
    const StartCase startCases[] = {
        {Mode::Auto, Trim::Down, true, {0xff, UINT64_MAX, 1}},
        {Mode::Off, Trim::Up, false, {0, 1, 0}},
        {Mode::On, Trim::Level, true, {1, 0, 1}},
    };
    for (const StartCase& k : startCases) {
        reset();
        const Config cfg = validConfig();
        CallBuilder call(sel(Selector::Start));
        call.structIn(&cfg, sizeof(cfg)).scalarsOut(1).withCompletion(kAsyncRef, 3);
        const uint32_t before = g_client->completion_count;
        CHECK_EQ(call.invoke(g_client), kIOReturnSuccess);
        CHECK_EQ(calls(Selector::Start), 1);
        CHECK(memcmp(&g_seen.config, &cfg, sizeof(cfg)) == 0);
        CHECK_EQ(call.outScalarCount, 1);
        CHECK_EQ(call.outScalars[0], 77 + 42);
        checkReferenceDelivered();
        OSAction* a = takePending();
        if (a != nullptr) {
            shapes::CompleteStart(g_client, a, kIOReturnSuccess, k.status, k.trim, k.done);
            CHECK_EQ(g_client->completion_count, before + 1);
            CHECK_EQ(g_client->last_completion_count, 3);
            CHECK_EQ(g_client->last_completion_data[0], k.expect[0]);
            CHECK_EQ(g_client->last_completion_data[1], k.expect[1]);
            CHECK_EQ(g_client->last_completion_data[2], k.expect[2]);
            a->release();
        }
    }
    // Complete… ignores a NULL completion or client (DriverKit would crash).
    {
        const uint32_t before = g_client->completion_count;
        const uint32_t nullBefore = g_client->null_action_completion_count;
        shapes::CompletePing(g_client, nullptr, kIOReturnSuccess);
        shapes::CompleteMeasure(g_client, nullptr, kIOReturnSuccess, -1);
        shapes::CompleteSample(nullptr, nullptr, kIOReturnSuccess, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
        CHECK_EQ(g_client->completion_count, before);
        CHECK_EQ(g_client->null_action_completion_count, nullBefore);
    }
}

static void testRaw()
{
    // Valid by the handler's own rules.
    {
        reset();
        const uint64_t in[1] = {5};
        CallBuilder call(sel(Selector::Raw));
        call.scalarsIn(in, 1).scalarsOut(1);
        CHECK_EQ(call.invoke(g_client), kIOReturnSuccess);
        CHECK_EQ(calls(Selector::Raw), 1);
        CHECK(g_seen.target == g_client);
        CHECK_EQ(g_seen.rawSelector, 15);
        CHECK_EQ(g_seen.rawX, 5);
        CHECK_EQ(call.outScalars[0], 15);
    }
    // Anything at all reaches the handler unchecked: it decides.
    {
        reset();
        const uint64_t in[3] = {1, 2, 3};
        const uint8_t s[10] = {};
        CallBuilder call(sel(Selector::Raw));
        call.scalarsIn(in, 3).structIn(s, sizeof(s)).scalarsOut(4).withCompletion();
        CHECK_EQ(call.invoke(g_client), kIOReturnBadArgument);
        CHECK_EQ(calls(Selector::Raw), 1);
        CHECK_EQ(g_seen.rawScalarInCount, 3);
        CHECK_EQ(g_seen.rawScalarOutCount, 4);
        CHECK(g_seen.rawHadStructIn);
        CHECK(g_seen.hadCompletion);
    }
}

static void testMaybeAsync()
{
    // Without a completion.
    {
        reset();
        const uint64_t in[1] = {9};
        CallBuilder call(sel(Selector::MaybeAsync));
        call.scalarsIn(in, 1);
        const uint32_t before = g_client->completion_count;
        CHECK_EQ(call.invoke(g_client), kIOReturnSuccess);
        CHECK_EQ(calls(Selector::MaybeAsync), 1);
        CHECK_EQ(g_seen.maybeX, 9);
        CHECK(!g_seen.hadCompletion);
        CHECK_EQ(g_client->completion_count, before);
        CHECK_EQ(g_client->null_action_completion_count, 0);
    }
    // With one: completed during the call.
    {
        reset();
        const uint64_t in[1] = {0xFFFFFFFFu};
        CallBuilder call(sel(Selector::MaybeAsync));
        call.scalarsIn(in, 1).withCompletion(kAsyncRef, 3);
        const uint32_t before = g_client->completion_count;
        CHECK_EQ(call.invoke(g_client), kIOReturnSuccess);
        CHECK_EQ(calls(Selector::MaybeAsync), 1);
        CHECK_EQ(g_seen.maybeX, 0xFFFFFFFFu);
        CHECK(g_seen.hadCompletion);
        checkReferenceDelivered();
        CHECK_EQ(g_client->completion_count, before + 1);
        CHECK_EQ(g_client->last_completion_count, 0);
        CHECK_EQ(reinterpret_cast<uintptr_t>(g_client->last_completion_action), g_seen.completionPtr);
    }
}

static void testHandshake()
{
    reset();
    {
        CallBuilder call(shapes::kHandshakeSelector);
        call.scalarsOut(2);
        CHECK_EQ(call.invoke(g_client), kIOReturnSuccess);
        CHECK_EQ(call.outScalarCount, 2);
        CHECK_EQ(call.outScalars[0], shapes::kFingerprint);
        CHECK_EQ(call.outScalars[1], shapes::kVersion);
        CHECK_EQ(totalCalls(), 0);
    }
    CHECK_EQ(shapes::kHandshakeSelector, 0x44584c4bu);
    // Wrong shapes are refused.
    const uint32_t outCounts[] = {0, 1, 3, 16};
    for (uint32_t n : outCounts) {
        CallBuilder call(shapes::kHandshakeSelector);
        call.scalarsOut(n);
        EXPECT_REFUSED(call, kIOReturnBadArgument);
    }
    {
        const uint64_t in[1] = {1};
        CallBuilder call(shapes::kHandshakeSelector);
        call.scalarsIn(in, 1).scalarsOut(2);
        EXPECT_REFUSED(call, kIOReturnBadArgument);
    }
    {
        const uint8_t s[8] = {};
        CallBuilder call(shapes::kHandshakeSelector);
        call.structIn(s, sizeof(s)).scalarsOut(2);
        EXPECT_REFUSED(call, kIOReturnBadArgument);
    }
    {
        static uint8_t s[5000];
        CallBuilder call(shapes::kHandshakeSelector);
        call.structIn(s, sizeof(s)).scalarsOut(2);
        EXPECT_REFUSED(call, kIOReturnBadArgument);
    }
    {
        CallBuilder call(shapes::kHandshakeSelector);
        call.scalarsOut(2).withCompletion();
        EXPECT_REFUSED(call, kIOReturnBadArgument);
    }
    // The handshake declares no structure output: a buffer offered for one is
    // a wrong shape too, exactly as a dispatch entry with
    // checkStructureOutputSize 0 would refuse it (§2.2-5).
    {
        CallBuilder call(shapes::kHandshakeSelector);
        call.scalarsOut(2).structOut(16);
        EXPECT_REFUSED(call, kIOReturnBadArgument);
    }
    {
        CallBuilder call(shapes::kHandshakeSelector);
        call.scalarsOut(2).structOutVariable();
        EXPECT_REFUSED(call, kIOReturnBadArgument);
    }
    // A selector that only matches the handshake in its low 32 bits is not it.
    {
        CallBuilder call((1ULL << 32) | shapes::kHandshakeSelector);
        call.scalarsOut(2);
        EXPECT_REFUSED(call, kIOReturnUnsupported);
    }
}

// ---------------------------------------------------------------------------
// Refusals
// ---------------------------------------------------------------------------

static void refuseScalars(uint64_t a, uint64_t b, uint64_t c, uint64_t on, uint64_t mode, int line)
{
    const uint64_t in[5] = {a, b, c, on, mode};
    CallBuilder call(sel(Selector::Scalars));
    call.scalarsIn(in, 5).scalarsOut(2);
    const int failBefore = g_fail;
    EXPECT_REFUSED(call, kIOReturnBadArgument);
    if (g_fail != failBefore) {
        fprintf(stderr, "  (from refuseScalars at %s:%d)\n", __FILE__, line);
    }
}

static void testScalarRefusals()
{
    reset();
    // One bad value at a time; the rest valid (a=1, b=0, c=1, on=0, mode=Off).
    refuseScalars(256, 0, 1, 0, 0, __LINE__);                // a: u8
    refuseScalars(0x105, 0, 1, 0, 0, __LINE__);              // a: would truncate to 5
    refuseScalars(UINT64_MAX, 0, 1, 0, 0, __LINE__);
    refuseScalars(1, sx(126), 1, 0, 0, __LINE__);            // b: -40..=125
    refuseScalars(1, sx(-41), 1, 0, 0, __LINE__);
    refuseScalars(1, 0xFFFFFFD8u, 1, 0, 0, __LINE__);        // -40 zero-extended, not sign-extended
    refuseScalars(1, 1ULL << 32, 1, 0, 0, __LINE__);         // would truncate to 0
    refuseScalars(1, sx(INT64_MIN), 1, 0, 0, __LINE__);
    refuseScalars(1, sx(INT32_MIN), 1, 0, 0, __LINE__);
    refuseScalars(1, 0, 0, 0, 0, __LINE__);                  // c: 1..=65536
    refuseScalars(1, 0, 65537, 0, 0, __LINE__);
    refuseScalars(1, 0, UINT64_MAX, 0, 0, __LINE__);
    refuseScalars(1, 0, 1, 2, 0, __LINE__);                  // on: bool
    refuseScalars(1, 0, 1, UINT64_MAX, 0, __LINE__);
    refuseScalars(1, 0, 1, 0x100, 0, __LINE__);
    refuseScalars(1, 0, 1, 0, 7, __LINE__);                  // mode: Off, On, Auto
    refuseScalars(1, 0, 1, 0, 2, __LINE__);
    refuseScalars(1, 0, 1, 0, 0x1ff, __LINE__);              // would truncate to Auto
    refuseScalars(1, 0, 1, 0, 0x100, __LINE__);              // would truncate to Off
    refuseScalars(1, 0, 1, 0, UINT64_MAX, __LINE__);         // 0xff sign-extended is not Auto
    // Sanity: the base vector itself is accepted.
    {
        const uint64_t in[5] = {1, 0, 1, 0, 0};
        CallBuilder call(sel(Selector::Scalars));
        call.scalarsIn(in, 5).scalarsOut(2);
        CHECK_EQ(call.invoke(g_client), kIOReturnSuccess);
    }

    // Wrong counts and shapes.
    const uint64_t in[16] = {1, 0, 1, 0, 0};
    const uint32_t inCounts[] = {0, 4, 6, 16};
    for (uint32_t n : inCounts) {
        CallBuilder call(sel(Selector::Scalars));
        call.scalarsIn(in, n).scalarsOut(2);
        EXPECT_REFUSED(call, kIOReturnBadArgument);
    }
    const uint32_t outCounts[] = {0, 1, 3, 16};
    for (uint32_t n : outCounts) {
        CallBuilder call(sel(Selector::Scalars));
        call.scalarsIn(in, 5).scalarsOut(n);
        EXPECT_REFUSED(call, kIOReturnBadArgument);
    }
    {
        const uint8_t s[8] = {};
        CallBuilder call(sel(Selector::Scalars));
        call.scalarsIn(in, 5).scalarsOut(2).structIn(s, sizeof(s));
        EXPECT_REFUSED(call, kIOReturnBadArgument);
    }
    {
        CallBuilder call(sel(Selector::Scalars));
        call.scalarsIn(in, 5).scalarsOut(2).structOut(8);
        EXPECT_REFUSED(call, kIOReturnBadArgument);
    }
    // A synchronous method called with a completion.
    {
        CallBuilder call(sel(Selector::Scalars));
        call.scalarsIn(in, 5).scalarsOut(2).withCompletion();
        EXPECT_REFUSED(call, kIOReturnBadArgument);
    }
    // More than 16 scalars never reach the dext (§1 limit 2).
    {
        const uint64_t many[17] = {};
        CallBuilder call(sel(Selector::Wide));
        call.scalarsIn(many, 17).scalarsOut(16);
        EXPECT_REFUSED(call, kIOReturnOverrun);
    }
    // wide with 15 in / 15 out.
    {
        CallBuilder call(sel(Selector::Wide));
        call.scalarsIn(in, 15).scalarsOut(16);
        EXPECT_REFUSED(call, kIOReturnBadArgument);
    }
    {
        CallBuilder call(sel(Selector::Wide));
        call.scalarsIn(in, 16).scalarsOut(15);
        EXPECT_REFUSED(call, kIOReturnBadArgument);
    }
    // mixed: index 0..4.
    const shapes::Point p = {1, 2};
    const uint64_t badIndex[] = {4, 5, 1ULL << 32, UINT64_MAX};
    for (uint64_t idx : badIndex) {
        const uint64_t mi[1] = {idx};
        CallBuilder call(sel(Selector::Mixed));
        call.scalarsIn(mi, 1).structIn(&p, sizeof(p)).scalarsOut(1).structOut(sizeof(Config));
        EXPECT_REFUSED(call, kIOReturnBadArgument);
    }
    // measure: channel 0..8.
    const uint64_t badChannel[] = {8, 255, 256, UINT64_MAX};
    for (uint64_t ch : badChannel) {
        const uint64_t mi[1] = {ch};
        CallBuilder call(sel(Selector::Measure));
        call.scalarsIn(mi, 1).withCompletion();
        EXPECT_REFUSED(call, kIOReturnBadArgument);
    }
    // read_log: max_lines is a u32.
    {
        const uint64_t mi[1] = {1ULL << 32};
        CallBuilder call(sel(Selector::ReadLog));
        call.scalarsIn(mi, 1).structOutVariable();
        EXPECT_REFUSED(call, kIOReturnBadArgument);
    }
    // maybe_async: x is a u32.
    {
        const uint64_t mi[1] = {0x100000000ULL};
        CallBuilder call(sel(Selector::MaybeAsync));
        call.scalarsIn(mi, 1);
        EXPECT_REFUSED(call, kIOReturnBadArgument);
    }
    {
        CallBuilder call(sel(Selector::MaybeAsync));
        call.withCompletion();
        EXPECT_REFUSED(call, kIOReturnBadArgument);
    }
    // big_out / read_log with no scalar.
    {
        CallBuilder call(sel(Selector::BigOut));
        call.structOut(sizeof(shapes::Big));
        EXPECT_REFUSED(call, kIOReturnBadArgument);
    }
}

static void refuseConfigBytes(Selector s, const uint8_t* bytes, size_t size, int line)
{
    const int failBefore = g_fail;
    CallBuilder call(sel(s));
    call.structIn(bytes, size);
    if (s == Selector::Structs) {
        call.structOut(sizeof(Config));
    } else {
        call.scalarsOut(1).withCompletion();
    }
    EXPECT_REFUSED(call, kIOReturnBadArgument);
    if (g_fail != failBefore) {
        fprintf(stderr, "  (from refuseConfigBytes at %s:%d)\n", __FILE__, line);
    }
}

static void testStructRefusals()
{
    reset();
    const Config good = validConfig();
    uint8_t bytes[sizeof(Config) + 1];
    memset(bytes, 0, sizeof(bytes));
    memcpy(bytes, &good, sizeof(good));

    const Selector configSelectors[] = {Selector::Structs, Selector::Start};
    for (Selector s : configSelectors) {
        // Config size ± 1, and none.
        refuseConfigBytes(s, bytes, sizeof(Config) - 1, __LINE__);
        refuseConfigBytes(s, bytes, sizeof(Config) + 1, __LINE__);
        refuseConfigBytes(s, bytes, 0, __LINE__);
        // Validated content: bool byte at 73, Mode byte at 72, Trim (i16) at 74.
        struct Patch {
            size_t offset;
            uint8_t value;
        };
        const Patch patches[] = {
            {73, 2},      // enabled = 2
            {73, 0xff},   // enabled = 255
            {72, 7},      // mode = 7
            {72, 2},      // mode = 2
            {72, 0xfe},   // mode = 254
            {74, 5},      // trim = 5
            {74, 2},      // trim = 2
            {74, 0xfe},   // trim = 0xfffe = -2 (with byte 75 = 0xff below)
        };
        for (const Patch& pt : patches) {
            uint8_t bad[sizeof(Config)];
            memcpy(bad, &good, sizeof(good));
            if (pt.offset == 74) {
                bad[74] = pt.value;
                bad[75] = pt.value == 0xfe ? 0xff : 0;
            } else {
                bad[pt.offset] = pt.value;
            }
            refuseConfigBytes(s, bad, sizeof(bad), __LINE__);
        }
        {
            // trim = 0x0100 (256): the low byte alone would look like Level.
            uint8_t bad[sizeof(Config)];
            memcpy(bad, &good, sizeof(good));
            bad[74] = 0x00;
            bad[75] = 0x01;
            refuseConfigBytes(s, bad, sizeof(bad), __LINE__);
        }
    }
    // structs: output capacity must be exactly sizeof(Config).
    const size_t outCaps[] = {0, sizeof(Config) - 1, sizeof(Config) + 1, 4097};
    for (size_t cap : outCaps) {
        CallBuilder call(sel(Selector::Structs));
        call.structIn(&good, sizeof(good));
        if (cap != 0) {
            call.structOut(cap);
        }
        EXPECT_REFUSED(call, kIOReturnBadArgument);
    }
    {
        CallBuilder call(sel(Selector::Structs));
        call.structIn(&good, sizeof(good)).structOutVariable();
        EXPECT_REFUSED(call, kIOReturnBadArgument);
    }
    {
        const uint64_t in[1] = {0};
        CallBuilder call(sel(Selector::Structs));
        call.scalarsIn(in, 1).structIn(&good, sizeof(good)).structOut(sizeof(Config));
        EXPECT_REFUSED(call, kIOReturnBadArgument);
    }
    // mixed: Point size ± 1, output capacity, output count.
    {
        const uint64_t in[1] = {1};
        const size_t pointSizes[] = {0, 7, 9, sizeof(Config)};
        for (size_t n : pointSizes) {
            CallBuilder call(sel(Selector::Mixed));
            call.scalarsIn(in, 1).structIn(bytes, n).scalarsOut(1).structOut(sizeof(Config));
            EXPECT_REFUSED(call, kIOReturnBadArgument);
        }
        const shapes::Point p = {1, 2};
        {
            CallBuilder call(sel(Selector::Mixed));
            call.scalarsIn(in, 1).structIn(&p, sizeof(p)).scalarsOut(1).structOut(sizeof(Config) - 1);
            EXPECT_REFUSED(call, kIOReturnBadArgument);
        }
        {
            CallBuilder call(sel(Selector::Mixed));
            call.scalarsIn(in, 1).structIn(&p, sizeof(p)).scalarsOut(0).structOut(sizeof(Config));
            EXPECT_REFUSED(call, kIOReturnBadArgument);
        }
    }
    // big_in: 4800 bytes exactly (through a descriptor either way).
    {
        static uint8_t big[5000];
        const size_t sizes[] = {0, 88, 4096, 4799, 4801};
        for (size_t n : sizes) {
            CallBuilder call(sel(Selector::BigIn));
            call.structIn(big, n).scalarsOut(1);
            EXPECT_REFUSED(call, kIOReturnBadArgument);
        }
    }
    // big_out: output capacity 4800 exactly.
    {
        const uint64_t in[1] = {1};
        const size_t caps[] = {0, 4096, 4799, 4801};
        for (size_t cap : caps) {
            CallBuilder call(sel(Selector::BigOut));
            call.scalarsIn(in, 1);
            if (cap != 0) {
                call.structOut(cap);
            }
            EXPECT_REFUSED(call, kIOReturnBadArgument);
        }
    }
    // write_blob: 1..=65536 bytes.
    {
        uint8_t* blob = static_cast<uint8_t*>(calloc(1, 65537));
        {
            CallBuilder call(sel(Selector::WriteBlob));
            call.scalarsOut(1);
            EXPECT_REFUSED(call, kIOReturnBadArgument);  // 0 bytes
        }
        {
            CallBuilder call(sel(Selector::WriteBlob));
            call.structIn(blob, 65537).scalarsOut(1);
            EXPECT_REFUSED(call, kIOReturnBadArgument);
        }
        {
            CallBuilder call(sel(Selector::WriteBlob));
            call.structIn(blob, 16).scalarsOut(0);
            EXPECT_REFUSED(call, kIOReturnBadArgument);
        }
        free(blob);
    }
    // read_name: the client offers exactly NAME_LEN bytes.
    {
        const size_t caps[] = {0, 31, 33, 4097};
        for (size_t cap : caps) {
            CallBuilder call(sel(Selector::ReadName));
            if (cap != 0) {
                call.structOut(cap);
            }
            EXPECT_REFUSED(call, kIOReturnBadArgument);
        }
        CallBuilder call(sel(Selector::ReadName));
        call.structOutVariable();
        EXPECT_REFUSED(call, kIOReturnBadArgument);
    }
    // read_log: only through the var-output call (§3.3-3).
    {
        const uint64_t in[1] = {3};
        const size_t caps[] = {0, 64, 4096, 8192};
        for (size_t cap : caps) {
            CallBuilder call(sel(Selector::ReadLog));
            call.scalarsIn(in, 1);
            if (cap != 0) {
                call.structOut(cap);
            }
            EXPECT_REFUSED(call, kIOReturnBadArgument);
        }
        CallBuilder call(sel(Selector::ReadLog));
        call.structOutVariable();
        EXPECT_REFUSED(call, kIOReturnBadArgument);  // no scalar
    }
    // set_key: 16 bytes exactly.
    {
        const size_t sizes[] = {0, 15, 17};
        for (size_t n : sizes) {
            CallBuilder call(sel(Selector::SetKey));
            call.structIn(bytes, n);
            EXPECT_REFUSED(call, kIOReturnBadArgument);
        }
    }
}

static void testCompletionRefusals()
{
    reset();
    const Config good = validConfig();
    const uint64_t one[1] = {1};
    // Async methods called without a completion.
    {
        CallBuilder call(sel(Selector::Ping));
        EXPECT_REFUSED(call, kIOReturnBadArgument);
    }
    {
        CallBuilder call(sel(Selector::Measure));
        call.scalarsIn(one, 1);
        EXPECT_REFUSED(call, kIOReturnBadArgument);
    }
    {
        CallBuilder call(sel(Selector::Sample));
        EXPECT_REFUSED(call, kIOReturnBadArgument);
    }
    {
        CallBuilder call(sel(Selector::Start));
        call.structIn(&good, sizeof(good)).scalarsOut(1);
        EXPECT_REFUSED(call, kIOReturnBadArgument);
    }
    // Async methods with the wrong shape despite a completion.
    {
        CallBuilder call(sel(Selector::Ping));
        call.scalarsIn(one, 1).withCompletion();
        EXPECT_REFUSED(call, kIOReturnBadArgument);
    }
    {
        CallBuilder call(sel(Selector::Sample));
        call.scalarsOut(1).withCompletion();
        EXPECT_REFUSED(call, kIOReturnBadArgument);
    }
    {
        CallBuilder call(sel(Selector::Start));
        call.structIn(&good, sizeof(good)).scalarsOut(0).withCompletion();
        EXPECT_REFUSED(call, kIOReturnBadArgument);
    }
    // Synchronous methods called with a completion.
    {
        const shapes::Point p = {1, 2};
        CallBuilder call(sel(Selector::Mixed));
        call.scalarsIn(one, 1).structIn(&p, sizeof(p)).scalarsOut(1).structOut(sizeof(Config)).withCompletion();
        EXPECT_REFUSED(call, kIOReturnBadArgument);
    }
    {
        CallBuilder call(sel(Selector::Structs));
        call.structIn(&good, sizeof(good)).structOut(sizeof(Config)).withCompletion();
        EXPECT_REFUSED(call, kIOReturnBadArgument);
    }
    {
        uint8_t key[16] = {};
        CallBuilder call(sel(Selector::SetKey));
        call.structIn(key, sizeof(key)).withCompletion();
        EXPECT_REFUSED(call, kIOReturnBadArgument);
    }
    {
        CallBuilder call(sel(Selector::ReadLog));
        call.scalarsIn(one, 1).structOutVariable().withCompletion();
        EXPECT_REFUSED(call, kIOReturnBadArgument);
    }
}

static void testSelectorRefusals()
{
    reset();
    const uint64_t selectors[] = {14, 17, 18, 1000, 0x44584c4a, 0x44584c4c, 1ULL << 32, (1ULL << 32) | 1,
                                  1ULL << 40, UINT64_MAX};
    for (uint64_t s : selectors) {
        // Both with nothing and with a plausible payload.
        {
            CallBuilder call(s);
            EXPECT_REFUSED(call, kIOReturnUnsupported);
        }
        {
            const uint64_t in[1] = {0};
            CallBuilder call(s);
            call.scalarsIn(in, 1).scalarsOut(1);
            EXPECT_REFUSED(call, kIOReturnUnsupported);
        }
        {
            CallBuilder call(s);
            call.withCompletion();
            EXPECT_REFUSED(call, kIOReturnUnsupported);
        }
    }
}

// The router itself: NULL pointers, and the table's shape.
static void testRouter()
{
    reset();
    IOUserClientMethodArguments args;
    memset(&args, 0, sizeof(args));
    CHECK_EQ(shapes::ExternalMethod(g_client, 0, nullptr), kIOReturnBadArgument);
    CHECK_EQ(shapes::ExternalMethod(nullptr, 0, &args), kIOReturnBadArgument);
    CHECK_EQ(totalCalls(), 0);

    CHECK_EQ(shapes::kSelectorCount, 17);
    CHECK(shapes::kDispatchTable[14].function == nullptr);  // reserved
    CHECK(shapes::kDispatchTable[15].function == nullptr);  // #[unchecked]: routed by hand
    CHECK(shapes::kDispatchTable[0].function == shapes::StaticHandleScalars);
    CHECK_EQ(shapes::kDispatchTable[10].checkCompletionExists, 1);           // async
    CHECK_EQ(shapes::kDispatchTable[0].checkCompletionExists, 0);            // sync
    CHECK_EQ(shapes::kDispatchTable[16].checkCompletionExists, 0xffffffffu); // completion(any)
    CHECK_EQ(shapes::kDispatchTable[6].checkStructureInputSize, kIOUserClientVariableStructureSize);
    CHECK_EQ(shapes::kDispatchTable[8].checkStructureOutputSize, kIOUserClientVariableStructureSize);
    CHECK_EQ(shapes::kDispatchTable[7].checkStructureOutputSize, shapes::NAME_LEN);
    CHECK_EQ(shapes::kDispatchTable[4].checkStructureInputSize, sizeof(shapes::Big));
    CHECK_EQ(shapes::kDispatchTable[5].checkStructureOutputSize, sizeof(shapes::Big));
}

// ---------------------------------------------------------------------------
// Handler errors and broken promises
// ---------------------------------------------------------------------------

static void testHandlerErrors()
{
    // scalars: outputs set by the handler are not returned.
    {
        reset();
        g_do.ret = kIOReturnNotReady;
        const uint64_t in[5] = {3, sx(-5), 9, 1, 0xff};
        CallBuilder call(sel(Selector::Scalars));
        call.scalarsIn(in, 5).scalarsOut(2);
        CHECK_EQ(call.invoke(g_client), kIOReturnNotReady);
        CHECK_EQ(calls(Selector::Scalars), 1);
        CHECK(allZero(call.outScalars, 16));
    }
    // structs: no OSData, so the app's buffer stays zero.
    {
        reset();
        g_do.ret = kIOReturnBusy;
        const Config in = validConfig();
        CallBuilder call(sel(Selector::Structs));
        call.structIn(&in, sizeof(in)).structOut(sizeof(Config));
        CHECK_EQ(call.invoke(g_client), kIOReturnBusy);
        CHECK_EQ(calls(Selector::Structs), 1);
        CHECK(bytesZero(call.outStructBytes(), sizeof(Config)));
    }
    // mixed: neither the scalar nor the struct.
    {
        reset();
        g_do.ret = kIOReturnError;
        const uint64_t in[1] = {1};
        const shapes::Point p = {1, 2};
        CallBuilder call(sel(Selector::Mixed));
        call.scalarsIn(in, 1).structIn(&p, sizeof(p)).scalarsOut(1).structOut(sizeof(Config));
        CHECK_EQ(call.invoke(g_client), kIOReturnError);
        CHECK_EQ(calls(Selector::Mixed), 1);
        CHECK(allZero(call.outScalars, 16));
        CHECK(bytesZero(call.outStructBytes(), sizeof(Config)));
    }
    // wide: none of the sixteen.
    {
        reset();
        g_do.ret = kIOReturnTimeout;
        const uint64_t in[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
        CallBuilder call(sel(Selector::Wide));
        call.scalarsIn(in, 16).scalarsOut(16);
        CHECK_EQ(call.invoke(g_client), kIOReturnTimeout);
        CHECK(allZero(call.outScalars, 16));
    }
    // big_out: nothing is written through the descriptor.
    {
        reset();
        g_do.ret = kIOReturnNoSpace;
        const uint64_t in[1] = {77};
        CallBuilder call(sel(Selector::BigOut));
        call.scalarsIn(in, 1).structOut(sizeof(shapes::Big));
        CHECK_EQ(call.invoke(g_client), kIOReturnNoSpace);
        CHECK_EQ(calls(Selector::BigOut), 1);
        CHECK(bytesZero(call.outStructBytes(), sizeof(shapes::Big)));
    }
    // write_blob through a descriptor: the mapping is released on error too (LSan).
    {
        reset();
        g_do.ret = kIOReturnNotWritable;
        static uint8_t blob[5000];
        CallBuilder call(sel(Selector::WriteBlob));
        call.structIn(blob, sizeof(blob)).scalarsOut(1);
        CHECK_EQ(call.invoke(g_client), kIOReturnNotWritable);
        CHECK_EQ(calls(Selector::WriteBlob), 1);
        CHECK(allZero(call.outScalars, 16));
    }
    // read_name: nothing returned.
    {
        reset();
        g_do.ret = kIOReturnNotReadable;
        CallBuilder call(sel(Selector::ReadName));
        call.structOut(shapes::NAME_LEN);
        CHECK_EQ(call.invoke(g_client), kIOReturnNotReadable);
        CHECK(bytesZero(call.outStructBytes(), shapes::NAME_LEN));
    }
    // read_log: the OSData the handler made is released, not returned (LSan).
    {
        reset();
        g_do.ret = kIOReturnNotReadable;
        const uint64_t in[1] = {5};
        CallBuilder call(sel(Selector::ReadLog));
        call.scalarsIn(in, 1).structOutVariable();
        CHECK_EQ(call.invoke(g_client), kIOReturnNotReadable);
        CHECK_EQ(calls(Selector::ReadLog), 1);
        CHECK_EQ(call.outVarSize(), 0);
        CHECK(call.outVarBytes() == nullptr);
    }
    // read_log: success without an OSData is an underrun (§3.3-3).
    {
        reset();
        g_do.logNull = true;
        const uint64_t in[1] = {5};
        CallBuilder call(sel(Selector::ReadLog));
        call.scalarsIn(in, 1).structOutVariable();
        CHECK_EQ(call.invoke(g_client), kIOReturnUnderrun);
        CHECK_EQ(calls(Selector::ReadLog), 1);
        CHECK_EQ(call.outVarSize(), 0);
    }
    // start: no ticket; the completion is not kept.
    {
        reset();
        g_do.ret = kIOReturnBusy;
        const Config cfg = validConfig();
        CallBuilder call(sel(Selector::Start));
        call.structIn(&cfg, sizeof(cfg)).scalarsOut(1).withCompletion();
        CHECK_EQ(call.invoke(g_client), kIOReturnBusy);
        CHECK_EQ(calls(Selector::Start), 1);
        CHECK(allZero(call.outScalars, 16));
        CHECK(g_pending == nullptr);
    }
    // measure / ping errors pass through.
    {
        reset();
        g_do.ret = kIOReturnOffline;
        const uint64_t in[1] = {3};
        CallBuilder call(sel(Selector::Measure));
        call.scalarsIn(in, 1).withCompletion();
        CHECK_EQ(call.invoke(g_client), kIOReturnOffline);
        CHECK_EQ(calls(Selector::Measure), 1);
        CHECK(g_pending == nullptr);
    }
    // raw: the handler's own error.
    {
        reset();
        g_do.ret = kIOReturnAborted;
        const uint64_t in[1] = {2};
        CallBuilder call(sel(Selector::Raw));
        call.scalarsIn(in, 1).scalarsOut(1);
        CHECK_EQ(call.invoke(g_client), kIOReturnAborted);
        CHECK(allZero(call.outScalars, 16));
    }

    // A handler breaking its bounded-output promise (name_length > NAME_LEN)
    // is the dext's bug: kIOReturnInternalError, nothing returned.
    const uint32_t badLengths[] = {33, 64, 4096, UINT32_MAX};
    for (uint32_t len : badLengths) {
        reset();
        g_do.nameLength = len;
        CallBuilder call(sel(Selector::ReadName));
        call.structOut(shapes::NAME_LEN);
        CHECK_EQ(call.invoke(g_client), kIOReturnInternalError);
        CHECK_EQ(calls(Selector::ReadName), 1);
        CHECK(bytesZero(call.outStructBytes(), shapes::NAME_LEN));
    }
}

// ---------------------------------------------------------------------------
// Client memory (§5)
// ---------------------------------------------------------------------------

static void testClientMemory()
{
    TestUserClient* uc = new TestUserClient();

    // Counters: read-only, 4096 bytes, the same descriptor every time.
    IOMemoryDescriptor* first = nullptr;
    uint32_t mapOptions = 0xdead;
    CHECK_EQ(dextlink_shim::copyClientMemory(uc, 1, &first, &mapOptions), kIOReturnSuccess);
    CHECK(first != nullptr);
    CHECK_EQ(mapOptions, kIOMapReadOnly);
    if (first != nullptr) {
        uint64_t length = 0;
        CHECK_EQ(first->GetLength(&length), kIOReturnSuccess);
        CHECK_EQ(length, 4096);
        CHECK_EQ(length, shapes::kCountersSize);
        // ClientMemory's reference plus the caller's.
        CHECK_EQ(first->getRetainCount(), 2);
        for (int i = 0; i < 3; i++) {
            IOMemoryDescriptor* again = nullptr;
            uint64_t options = 0;
            CHECK_EQ(uc->CopyClientMemoryForType(1, &options, &again), kIOReturnSuccess);
            CHECK(again == first);
            CHECK_EQ(options, kIOUserClientMemoryReadOnly);
            CHECK_EQ(first->getRetainCount(), 3);
            if (again != nullptr) {
                again->release();  // the caller consumes its reference (§5-1)
            }
            CHECK_EQ(first->getRetainCount(), 2);
        }
        IOAddressSegment seg = {};
        IOBufferMemoryDescriptor* buf = OSDynamicCast(IOBufferMemoryDescriptor, first);
        CHECK(buf != nullptr);
        if (buf != nullptr) {
            CHECK_EQ(buf->GetAddressRange(&seg), kIOReturnSuccess);
            CHECK_EQ(seg.length, 4096);
            CHECK(seg.address != 0);
            CHECK(bytesZero(reinterpret_cast<const uint8_t*>(seg.address), 4096));
        }
    }

    // Scratch: read-write, 65536 bytes, also stable.
    IOMemoryDescriptor* scratch = nullptr;
    mapOptions = 0xdead;
    CHECK_EQ(dextlink_shim::copyClientMemory(uc, 2, &scratch, &mapOptions), kIOReturnSuccess);
    CHECK(scratch != nullptr);
    CHECK_EQ(mapOptions, 0);
    CHECK(scratch != first);
    if (scratch != nullptr) {
        uint64_t length = 0;
        CHECK_EQ(scratch->GetLength(&length), kIOReturnSuccess);
        CHECK_EQ(length, 65536);
        CHECK_EQ(length, shapes::kScratchSize);
        IOMemoryDescriptor* again = nullptr;
        uint64_t options = 0xff;
        CHECK_EQ(uc->CopyClientMemoryForType(2, &options, &again), kIOReturnSuccess);
        CHECK(again == scratch);
        CHECK_EQ(options & kIOUserClientMemoryReadOnly, 0);
        if (again != nullptr) {
            again->release();
        }
        CHECK_EQ(scratch->getRetainCount(), 2);
        // A writable mapping round-trips data.
        IOMemoryMap* map = nullptr;
        CHECK_EQ(scratch->CreateMapping(0, 0, 0, 0, 0, &map), kIOReturnSuccess);
        if (map != nullptr) {
            CHECK(!map->IsReadOnly());
            CHECK_EQ(map->GetLength(), 65536);
            reinterpret_cast<uint8_t*>(map->GetAddress())[65535] = 0x5a;
            map->release();
        }
    }

    // Unknown types and bad pointers.
    const uint64_t badTypes[] = {0, 3, 4, 1ULL << 32 | 1, UINT64_MAX};
    for (uint64_t type : badTypes) {
        IOMemoryDescriptor* md = reinterpret_cast<IOMemoryDescriptor*>(uintptr_t{1});
        uint64_t options = 0x77;
        CHECK_EQ(uc->CopyClientMemoryForType(type, &options, &md), kIOReturnBadArgument);
        IOMemoryDescriptor* viaKernel = nullptr;
        uint32_t kopts = 0x77;
        CHECK_EQ(dextlink_shim::copyClientMemory(uc, type, &viaKernel, &kopts), kIOReturnBadArgument);
        CHECK(viaKernel == nullptr);
        CHECK_EQ(kopts, 0);  // §5-1: on error the options are 0
    }
    {
        IOMemoryDescriptor* md = nullptr;
        uint64_t options = 0;
        CHECK_EQ(uc->clientMemory.Copy(1, nullptr, &md), kIOReturnBadArgument);
        CHECK_EQ(uc->clientMemory.Copy(1, &options, nullptr), kIOReturnBadArgument);
    }

    // Release() drops ClientMemory's references: ours are the last ones.
    if (first != nullptr && scratch != nullptr) {
        uc->clientMemory.Release();
        CHECK_EQ(first->getRetainCount(), 1);
        CHECK_EQ(scratch->getRetainCount(), 1);
        uc->clientMemory.Release();  // idempotent
        CHECK_EQ(first->getRetainCount(), 1);
        // A fresh buffer is created on next use, zero-filled.
        IOMemoryDescriptor* fresh = nullptr;
        uint32_t kopts = 0;
        CHECK_EQ(dextlink_shim::copyClientMemory(uc, 2, &fresh, &kopts), kIOReturnSuccess);
        CHECK(fresh != nullptr);
        if (fresh != nullptr) {
            CHECK_EQ(fresh->getRetainCount(), 2);
            IOMemoryMap* map = nullptr;
            CHECK_EQ(fresh->CreateMapping(0, 0, 0, 0, 0, &map), kIOReturnSuccess);
            if (map != nullptr) {
                CHECK_EQ(reinterpret_cast<const uint8_t*>(map->GetAddress())[65535], 0);
                map->release();
            }
            fresh->release();
        }
    }
    if (first != nullptr) {
        first->release();
    }
    if (scratch != nullptr) {
        scratch->release();
    }
    // free() calls Release() (LSan reports anything left).
    CHECK_EQ(uc->getRetainCount(), 1);
    uc->release();
}

// ---------------------------------------------------------------------------

int main()
{
    g_client = new TestUserClient();
    reset();

    testScalars();
    testStructs();
    testMixed();
    testWide();
    testBig();
    testWriteBlob();
    testReadName();
    testReadLog();
    testSetKey();
    testAsync();
    testRaw();
    testMaybeAsync();
    testHandshake();

    testScalarRefusals();
    testStructRefusals();
    testCompletionRefusals();
    testSelectorRefusals();
    testRouter();
    testHandlerErrors();

    testClientMemory();

    // Nothing left pending, and the user client itself is the last reference.
    CHECK(g_pending == nullptr);
    if (g_pending != nullptr) {
        g_pending->release();
        g_pending = nullptr;
    }
    CHECK_EQ(g_client->dropped_completion_count, 0);
    CHECK_EQ(g_client->null_action_completion_count, 0);
    CHECK_EQ(g_client->getRetainCount(), 1);
    g_client->release();
    g_client = nullptr;

    printf("shapes-dispatch: %d passed, %d failed\n", g_pass, g_fail);
    return g_fail == 0 ? 0 : 1;
}
