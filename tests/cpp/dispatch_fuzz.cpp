// Randomised test of the dext header generated for tests/schemas/shapes.dextlink
// (issue 8 §3, "the generated C++ under sanitizers").
//
// Every iteration builds one IOUserClientMethodArguments by hand -- not only
// the shapes the kernel produces (docs/driverkit.md §3.4) but hostile ones too:
// wrong scalar counts, wrong structure sizes, NULL and exact-size scalar
// arrays, huge and negative values, structure inputs that arrive inline, as a
// descriptor, both or neither, descriptors that map less than they claim,
// output capacities too small or too large, output descriptors that are too
// short, completions present or absent, selectors out of range, NULL
// arguments -- and sends it through the shim's ExternalMethod path:
//     TestUserClient::ExternalMethod -> shapes::ExternalMethod
//         -> IOUserClient::ExternalMethod (the shim's DriverKit checks) -> thunk -> handler.
//
// What is checked:
//   - every handler asserts (abort on violation) that it runs for a call that
//     may reach it, and that each argument is within the schema's declared
//     ranges and sizes and equal to what the driver sent;
//   - the driver decides, independently of the generated table, whether the
//     call must be refused: from the schema's declared shape (the table
//     below, written from shapes.dextlink) with the rules of docs/driverkit.md
//     §2.2 (exact counts and sizes, 0xffffffff only where the schema declares
//     a variable size, completion for async methods only), then the ranges and
//     sizes the schema declares (what the thunks promise to check). A call
//     that must be refused must be refused with kIOReturnBadArgument (unknown
//     and reserved selectors with kIOReturnUnsupported) before any handler
//     ran, with no output written and no completion kept; a call that must be
//     accepted must reach its handler exactly once and return exactly the
//     outputs the handler produced;
//   - no object leaks or stays retained (input OSData and descriptors,
//     mappings, completions, the handler's output OSData), and the structure
//     input is never written;
//   - ASan (with exact-size heap buffers for every array and structure the
//     thunks read or write) and UBSan (bool/enum loads, overflow) see nothing.
//
// Usage:  dispatch_fuzz SEED ITERATIONS [FIRST]
// Iteration i draws its randomness from (SEED, i) only, so a failure report
// ("seed S, iteration I") replays alone with `dispatch_fuzz S 1 I`.
// Prints "dispatch-fuzz: ... 0 failed" and exits 0; any violation prints the
// seed, the iteration and the call, then aborts.
//
// With -DDEXTLINK_LIBFUZZER (and clang's -fsanitize=fuzzer) the same
// generator and checks run under libFuzzer instead: LLVMFuzzerTestOneInput
// draws its decisions from the fuzzer's bytes.
//
// Built by tests/tests/cpp_fuzz.rs, which writes the generated header next to
// it as "Shapes.h" and compiles with -DDEXTLINK_DRIVERKIT_SHIM -I schema/shim
// plus the strict warning flags and -fsanitize=address,undefined.
// Section numbers refer to docs/driverkit.md.

#include "Shapes.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

using shapes::Config;
using shapes::Mode;
using shapes::Selector;
using shapes::Trim;

// The user client: ExternalMethod routes through the generated header, as a
// dext's override does.
class TestUserClient : public IOUserClient {
public:
    kern_return_t ExternalMethod(uint64_t selector, IOUserClientMethodArguments* arguments,
                                 const IOUserClientMethodDispatch* dispatch, OSObject* target,
                                 void* reference) override
    {
        (void)dispatch;
        (void)target;
        (void)reference;
        return shapes::ExternalMethod(this, selector, arguments);
    }
};

static TestUserClient* g_client = nullptr;

namespace {

// ---------------------------------------------------------------------------
// Randomness: splitmix64, or the fuzzer's bytes first
// ---------------------------------------------------------------------------

uint64_t splitmix(uint64_t& state)
{
    state += 0x9E3779B97F4A7C15ULL;
    uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

class Rng {
public:
    explicit Rng(uint64_t seed) : state_(seed), data_(nullptr), size_(0) {}
    // libFuzzer: decisions come from the input; when it runs out, from a
    // generator seeded with a hash of it.
    Rng(const uint8_t* data, size_t size) : state_(0x5EED), data_(data), size_(size)
    {
        for (size_t i = 0; i < size; i++) {
            state_ = (state_ ^ data[i]) * 0x100000001B3ULL;
        }
    }

    uint64_t next()
    {
        if (size_ >= 8) {
            uint64_t v;
            memcpy(&v, data_, 8);
            data_ += 8;
            size_ -= 8;
            return v;
        }
        return splitmix(state_);
    }

    // 0..n-1 for n <= 256 (one fuzzer byte).
    uint32_t small(uint32_t n)
    {
        if (size_ > 0) {
            uint32_t b = *data_;
            data_++;
            size_--;
            return b % n;
        }
        return static_cast<uint32_t>(splitmix(state_) % n);
    }

    uint64_t below(uint64_t n) { return n <= 256 ? small(static_cast<uint32_t>(n)) : next() % n; }
    bool chance(uint32_t num, uint32_t den) { return small(den) < num; }

private:
    uint64_t state_;
    const uint8_t* data_;
    size_t size_;
};

void fillBytes(uint8_t* p, size_t n, uint64_t seed)
{
    uint64_t s = seed;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v = splitmix(s);
        memcpy(p + i, &v, 8);
    }
    if (i < n) {
        uint64_t v = splitmix(s);
        memcpy(p + i, &v, n - i);
    }
}

// ---------------------------------------------------------------------------
// The schema's declared shapes, written from tests/schemas/shapes.dextlink
// (not read from the generated table: the table is what is under test)
// ---------------------------------------------------------------------------

enum CompletionRule { kSync, kAsync, kEither };                 // async fn / fn / #[completion(any)]
enum ScalarKind { kU8, kI32, kU32, kU64, kBool, kModeEnum };
enum InShape { kInNone, kInConfig, kInPoint, kInBig, kInBlob, kInKey };
enum OutShape { kOutNone, kOutConfig, kOutBig, kOutName, kOutLog };

struct ScalarSpec {
    ScalarKind kind;
    bool ranged;
    int64_t lo;  // inclusive, compared signed for kI32 and unsigned otherwise
    int64_t hi;
};

struct Spec {
    const char* name;
    bool present;    // false: reserved or no such selector
    bool unchecked;  // #[unchecked]: dispatched by hand
    CompletionRule completion;
    uint32_t nIn;
    ScalarSpec in[16];
    InShape structIn;
    uint32_t nOut;
    OutShape structOut;
};

constexpr uint32_t kSelectors = 17;  // 0..=16
constexpr uint64_t kHandshake = 0x44584c4b;
constexpr uint64_t kConfigSize = 88;   // Point 8 + [Point; 4] 32 + [u8; 32] + u8 + bool + i16 + u32 + u64
constexpr uint64_t kPointSize = 8;
constexpr uint64_t kBigSize = 4800;    // [u64; 600]
constexpr uint64_t kBlobMax = 65536;   // BLOB_MAX
constexpr uint64_t kKeySize = 16;
constexpr uint64_t kNameLen = 32;      // NAME_LEN
constexpr uint64_t kVariable = 0xffffffffULL;  // kIOUserClientVariableStructureSize (§2.2-7)
constexpr size_t kModeOffset = 72;
constexpr size_t kEnabledOffset = 73;
constexpr size_t kTrimOffset = 74;
constexpr size_t kGainOffset = 76;
constexpr size_t kSerialOffset = 80;

// The driver's sizes are its own; the generated layout must agree with them.
static_assert(sizeof(Config) == kConfigSize, "Config size");
static_assert(sizeof(shapes::Point) == kPointSize, "Point size");
static_assert(sizeof(shapes::Big) == kBigSize, "Big size");
static_assert(offsetof(Config, mode) == kModeOffset, "Config.mode");
static_assert(offsetof(Config, enabled) == kEnabledOffset, "Config.enabled");
static_assert(offsetof(Config, trim) == kTrimOffset, "Config.trim");
static_assert(offsetof(Config, gain) == kGainOffset, "Config.gain");
static_assert(offsetof(Config, serial) == kSerialOffset, "Config.serial");

constexpr ScalarSpec kAnyU64 = {kU64, false, 0, 0};

const Spec kSpecs[kSelectors] = {
    // 0 => fn scalars(a: u8, b: i32 in MIN_TEMP..=125, c: u64 in 1..=BLOB_MAX, on: bool, mode: Mode) -> (sum: u64, neg: i64);
    {"scalars", true, false, kSync, 5,
     {{kU8, false, 0, 0}, {kI32, true, -40, 125}, {kU64, true, 1, 65536}, {kBool, false, 0, 0}, {kModeEnum, false, 0, 0}},
     kInNone, 2, kOutNone},
    // 1 => fn structs(config: &Config) -> (echo: Config);
    {"structs", true, false, kSync, 0, {}, kInConfig, 0, kOutConfig},
    // 2 => fn mixed(index: u32 in 0..4, point: &Point) -> (ok: bool, config: Config);
    {"mixed", true, false, kSync, 1, {{kU32, true, 0, 3}}, kInPoint, 1, kOutConfig},
    // 3 => fn wide(a0..a15: u64) -> (b0..b15: u64);
    {"wide", true, false, kSync, 16,
     {kAnyU64, kAnyU64, kAnyU64, kAnyU64, kAnyU64, kAnyU64, kAnyU64, kAnyU64, kAnyU64, kAnyU64, kAnyU64, kAnyU64,
      kAnyU64, kAnyU64, kAnyU64, kAnyU64},
     kInNone, 16, kOutNone},
    // 4 => fn big_in(big: &Big) -> (checksum: u64);
    {"big_in", true, false, kSync, 0, {}, kInBig, 1, kOutNone},
    // 5 => fn big_out(seed: u64) -> (big: Big);
    {"big_out", true, false, kSync, 1, {kAnyU64}, kInNone, 0, kOutBig},
    // 6 => fn write_blob(data: &[u8; 1..=BLOB_MAX]) -> (written: u32);
    {"write_blob", true, false, kSync, 0, {}, kInBlob, 1, kOutNone},
    // 7 => fn read_name() -> (name: [u8; ..=NAME_LEN]);
    {"read_name", true, false, kSync, 0, {}, kInNone, 0, kOutName},
    // 8 => fn read_log(max_lines: u32) -> (log: [u8]);
    {"read_log", true, false, kSync, 1, {{kU32, false, 0, 0}}, kInNone, 0, kOutLog},
    // 9 => fn set_key(key: &[u8; 16]);
    {"set_key", true, false, kSync, 0, {}, kInKey, 0, kOutNone},
    // 10 => async fn ping();
    {"ping", true, false, kAsync, 0, {}, kInNone, 0, kOutNone},
    // 11 => async fn measure(channel: u8 in 0..8) completes (value: i32);
    {"measure", true, false, kAsync, 1, {{kU8, true, 0, 7}}, kInNone, 0, kOutNone},
    // 12 => async fn sample() completes (v0..v15: u64);
    {"sample", true, false, kAsync, 0, {}, kInNone, 0, kOutNone},
    // 13 => async fn start(config: &Config) -> (ticket: u32) completes (status: Mode, trim: Trim, done: bool);
    {"start", true, false, kAsync, 0, {}, kInConfig, 1, kOutNone},
    // 14 => reserved;
    {"reserved", false, false, kSync, 0, {}, kInNone, 0, kOutNone},
    // #[unchecked] 15 => fn raw(x: u64) -> (y: u64);
    {"raw", true, true, kSync, 1, {kAnyU64}, kInNone, 1, kOutNone},
    // #[completion(any)] 16 => async fn maybe_async(x: u32);
    {"maybe_async", true, false, kEither, 1, {{kU32, false, 0, 0}}, kInNone, 0, kOutNone},
};

uint64_t inSize(InShape s)
{
    switch (s) {
    case kInConfig: return kConfigSize;
    case kInPoint: return kPointSize;
    case kInBig: return kBigSize;
    case kInKey: return kKeySize;
    case kInBlob: return kVariable;
    case kInNone: break;
    }
    return 0;
}

uint64_t outSize(OutShape s)
{
    switch (s) {
    case kOutConfig: return kConfigSize;
    case kOutBig: return kBigSize;
    case kOutName: return kNameLen;  // a bounded output's check is its bound (the capacity offered)
    case kOutLog: return kVariable;
    case kOutNone: break;
    }
    return 0;
}

bool isModeValue(uint64_t v)
{
    return v == 0 || v == 1 || v == 0xff;
}

bool isTrimValue(int64_t v)
{
    return v == -1 || v == 0 || v == 1;
}

// A scalar as it travels (64 bits, signed types sign-extended) against its declaration.
bool scalarOk(const ScalarSpec& s, uint64_t v)
{
    const int64_t sv = static_cast<int64_t>(v);
    switch (s.kind) {
    case kU8:
        if (v > 0xff) return false;
        break;
    case kU32:
        if (v > 0xffffffffULL) return false;
        break;
    case kU64:
        break;
    case kI32:
        if (sv < INT32_MIN || sv > INT32_MAX) return false;
        break;
    case kBool:
        return v <= 1;
    case kModeEnum:
        return isModeValue(v);
    }
    if (!s.ranged) {
        return true;
    }
    if (s.kind == kI32) {
        return sv >= s.lo && sv <= s.hi;
    }
    return v >= static_cast<uint64_t>(s.lo) && v <= static_cast<uint64_t>(s.hi);
}

bool configBytesValid(const uint8_t* bytes)
{
    int16_t trim;
    memcpy(&trim, bytes + kTrimOffset, sizeof(trim));
    return isModeValue(bytes[kModeOffset]) && bytes[kEnabledOffset] <= 1 && isTrimValue(trim);
}

// ---------------------------------------------------------------------------
// One call: what the driver decided to send
// ---------------------------------------------------------------------------

enum PtrKind { kPtrExact, kPtrSixteen, kPtrNull };      // array sized to the count / 16 slots / NULL
enum Delivery { kNoInput, kInline, kDescriptor, kBoth };  // structureInput / …Descriptor / both / neither

constexpr uint64_t kMaxBuffer = 70000;  // largest buffer the driver allocates

struct Case {
    uint64_t selector;
    uint64_t argsSelector;  // IOUserClientMethodArguments::selector (ignored by the router)
    uint64_t version;
    bool nullArguments;     // shapes::ExternalMethod(client, selector, NULL)
    bool nullClient;        // shapes::ExternalMethod(NULL, selector, &args)
    bool garbageReserved;
    bool completion;
    uint32_t scalarInCount;
    PtrKind scalarInPtr;
    uint64_t scalarIn[16];
    Delivery delivery;
    uint64_t inLength;      // inline: OSData length; descriptor: its GetLength()
    uint64_t inMappable;    // descriptor: bytes CreateMapping really maps (< inLength: it lies)
    uint64_t bothLength;    // kBoth: the OSData's length (the descriptor has inLength)
    uint64_t payloadSeed;
    unsigned corrupt;       // 0, or which Config validity byte to overwrite (1 mode, 2 enabled, 3 trim)
    uint16_t corruptValue;
    uint32_t scalarOutCount;
    PtrKind scalarOutPtr;
    uint64_t outMax;        // structureOutputMaximumSize
    bool outDescriptor;
    uint64_t outClaimed;    // the output descriptor's GetLength()
    uint64_t outMappable;   // what it really maps
    // What the handler does.
    kern_return_t handlerRet;
    uint32_t nameLength;
    bool completeNow;
};

// What the driver expects, decided from the Case and the schema alone.
struct Expect {
    bool handlerRuns;
    bool anyResult;      // a shape the kernel never produces and the schema does not decide
    bool byTable;        // refused by a rule of §2.2 (else by the schema's ranges and sizes)
    IOReturn result;
    const char* why;
};

struct Stats {
    uint64_t iterations;
    uint64_t accepted;          // success with the handler's outputs
    uint64_t handlerErrors;     // the handler's own error passed through
    uint64_t refusedTable;      // refused by the rules of §2.2
    uint64_t refusedSchema;     // refused by the schema's ranges and sizes
    uint64_t unsupported;
    uint64_t lateErrors;        // handler ran, then returning its output failed
    uint64_t handshakes;
    uint64_t raw;
    uint64_t anyOutcome;
    uint64_t nullArguments;
    uint64_t handlerCalls;
    uint64_t completions;
    uint64_t perSelectorAccepted[kSelectors];
    uint64_t perSelectorRefused[kSelectors];
};

Stats g_stats;
uint64_t g_seed;
uint64_t g_iteration;
bool g_libfuzzer = false;
const Case* g_case = nullptr;
const Expect* g_expect = nullptr;
const uint8_t* g_inputBytes = nullptr;  // the structure input bytes the thunk should see
uint64_t g_handlerCalls = 0;
uint64_t g_lastHandler = UINT64_MAX;
OSAction* g_deferred = nullptr;         // a completion a handler retained
volatile uint64_t g_sink = 0;           // keeps reads the optimiser could drop

const char* ptrName(PtrKind p)
{
    return p == kPtrExact ? "exact" : p == kPtrSixteen ? "16-slot" : "NULL";
}

const char* deliveryName(Delivery d)
{
    switch (d) {
    case kNoInput: return "none";
    case kInline: return "OSData";
    case kDescriptor: return "descriptor";
    case kBoth: return "OSData+descriptor";
    }
    return "?";
}

void describe(FILE* f, const Case& c)
{
    fprintf(f, "  call: selector %llu (%s)%s%s, completion %s\n", static_cast<unsigned long long>(c.selector),
            c.selector < kSelectors ? kSpecs[c.selector].name : c.selector == kHandshake ? "handshake" : "unknown",
            c.nullArguments ? ", arguments NULL" : "", c.nullClient ? ", client NULL" : "",
            c.completion ? "yes" : "no");
    fprintf(f, "        scalarInput %s, count %u:", ptrName(c.scalarInPtr), c.scalarInCount);
    for (uint32_t i = 0; i < 16 && i < c.scalarInCount; i++) {
        fprintf(f, " %#llx", static_cast<unsigned long long>(c.scalarIn[i]));
    }
    fprintf(f, "\n        structure input %s, length %llu, mappable %llu, OSData length %llu, corrupt %u=%#x\n",
            deliveryName(c.delivery), static_cast<unsigned long long>(c.inLength),
            static_cast<unsigned long long>(c.inMappable), static_cast<unsigned long long>(c.bothLength), c.corrupt,
            c.corruptValue);
    fprintf(f,
            "        scalarOutput %s, count %u; structureOutputMaximumSize %#llx, output descriptor %s (length %llu, "
            "mappable %llu)\n",
            ptrName(c.scalarOutPtr), c.scalarOutCount, static_cast<unsigned long long>(c.outMax),
            c.outDescriptor ? "yes" : "no", static_cast<unsigned long long>(c.outClaimed),
            static_cast<unsigned long long>(c.outMappable));
    fprintf(f, "        handler returns %#x, name length %u, completes %s\n", static_cast<unsigned>(c.handlerRet),
            c.nameLength, c.completeNow ? "at once" : "later");
}

[[noreturn]] void failure(const char* file, int line, const char* cond, const char* format, ...)
    __attribute__((format(printf, 4, 5)));

void failure(const char* file, int line, const char* cond, const char* format, ...)
{
    fprintf(stderr, "dispatch-fuzz: FAILED at %s:%d: %s\n  ", file, line, cond);
    va_list ap;
    va_start(ap, format);
    vfprintf(stderr, format, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    if (g_libfuzzer) {
        fprintf(stderr, "  (libFuzzer input: see the crash file it writes)\n");
    } else {
        fprintf(stderr, "  seed %#llx, iteration %llu; replay: dispatch_fuzz %#llx 1 %llu\n",
                static_cast<unsigned long long>(g_seed), static_cast<unsigned long long>(g_iteration),
                static_cast<unsigned long long>(g_seed), static_cast<unsigned long long>(g_iteration));
    }
    if (g_case != nullptr) {
        describe(stderr, *g_case);
    }
    if (g_expect != nullptr) {
        fprintf(stderr, "  expected: %s (%s, result %#x)\n", g_expect->why,
                g_expect->anyResult ? "any result" : g_expect->handlerRuns ? "handler runs" : "refused",
                static_cast<unsigned>(g_expect->result));
    }
    fflush(stderr);
    abort();
}

#define FUZZ_ASSERT(cond, ...)                                  \
    do {                                                        \
        if (!(cond)) {                                          \
            failure(__FILE__, __LINE__, #cond, __VA_ARGS__);    \
        }                                                       \
    } while (0)

// ---------------------------------------------------------------------------
// Deterministic outputs, computed the same way by the handlers and the checks
// ---------------------------------------------------------------------------

uint64_t scalarsSum(uint8_t a, uint64_t c, bool on, Mode mode)
{
    return a + c + (on ? 1000000u : 0u) + static_cast<uint64_t>(mode) * 1000u;
}
int64_t scalarsNeg(int32_t b)
{
    return static_cast<int64_t>(b) * 3 - 7;
}
uint64_t wideOut(uint64_t a, unsigned i)
{
    return ~a + i;
}
uint64_t bigWord(uint64_t seed, size_t i)
{
    return seed ^ (static_cast<uint64_t>(i) * 0x100000001ULL);
}
uint64_t bigChecksum(const uint8_t* bytes)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < 600; i++) {
        uint64_t w;
        memcpy(&w, bytes + i * 8, 8);
        sum += w * (i + 1);
    }
    return sum;
}
int32_t measureValue(uint8_t channel)
{
    return -1000 - 3 * static_cast<int32_t>(channel);
}
const char kName[] = "shapes-dext";  // 11 bytes without the NUL
uint8_t nameByte(uint32_t i)
{
    return i < sizeof(kName) - 1 ? static_cast<uint8_t>(kName[i]) : static_cast<uint8_t>('#');
}
uint32_t logLines(uint32_t maxLines)
{
    return maxLines % 7;
}
size_t logText(uint32_t maxLines, char* out, size_t capacity)
{
    size_t n = 0;
    for (uint32_t i = 0; i < logLines(maxLines); i++) {
        int k = snprintf(out + n, capacity - n, "line %u\n", i);
        n += static_cast<size_t>(k);
    }
    return n;
}
void structsEcho(const uint8_t* in, Config* out)
{
    memcpy(out, in, sizeof(Config));
    out->gain = out->gain + 1;
    out->serial = ~out->serial;
    out->enabled = !out->enabled;
}
void mixedConfig(uint32_t index, const shapes::Point& point, Config* config)
{
    memset(config, 0, sizeof(*config));
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
}
uint64_t sampleValue(uint64_t token, unsigned i)
{
    return token * 16 + i;
}
uint64_t sx(int64_t v)
{
    return static_cast<uint64_t>(v);
}

}  // namespace

// ---------------------------------------------------------------------------
// The handlers: each asserts it may run and that its arguments are in range
// ---------------------------------------------------------------------------


namespace {

void enterHandler(Selector s, OSObject* target)
{
    const uint64_t sel = static_cast<uint64_t>(s);
    FUZZ_ASSERT(g_case != nullptr && g_expect != nullptr, "handler %llu ran outside a call",
                static_cast<unsigned long long>(sel));
    FUZZ_ASSERT(g_expect->handlerRuns || g_expect->anyResult,
                "handler %s ran for a call that must be refused before any handler", kSpecs[sel].name);
    FUZZ_ASSERT(sel == g_case->selector, "handler %s ran for selector %llu", kSpecs[sel].name,
                static_cast<unsigned long long>(g_case->selector));
    FUZZ_ASSERT(target == g_client, "handler %s: target is not the user client",
                kSpecs[sel].name);
    g_handlerCalls++;
    g_lastHandler = sel;
}

// Whether the handler can compare what it received with what the driver sent
// (not for a structure input sent both inline and as a descriptor).
bool exact()
{
    return !g_expect->anyResult;
}

uint8_t byteOf(const void* p)
{
    uint8_t b;
    memcpy(&b, p, 1);
    return b;
}

void assertConfig(const char* who, const Config& config)
{
    const uint8_t* bytes = reinterpret_cast<const uint8_t*>(&config);
    int16_t trim;
    memcpy(&trim, bytes + kTrimOffset, sizeof(trim));
    FUZZ_ASSERT(isModeValue(bytes[kModeOffset]), "%s: config.mode = %#x is not a declared Mode", who,
                bytes[kModeOffset]);
    FUZZ_ASSERT(bytes[kEnabledOffset] <= 1, "%s: config.enabled = %#x is not a bool", who, bytes[kEnabledOffset]);
    FUZZ_ASSERT(isTrimValue(trim), "%s: config.trim = %d is not a declared Trim", who, trim);
    if (exact()) {
        FUZZ_ASSERT(g_inputBytes != nullptr && memcmp(bytes, g_inputBytes, kConfigSize) == 0,
                    "%s: the config differs from the bytes sent", who);
    }
}

void keepCompletion(OSAction* completion)
{
    FUZZ_ASSERT(completion != nullptr, "an async handler got a NULL completion");
    if (g_case->handlerRet == kIOReturnSuccess && !g_case->completeNow) {
        completion->retain();
        g_deferred = completion;
    }
}

}  // namespace

namespace shapes {

kern_return_t HandleScalars(OSObject* target, uint8_t a, int32_t b, uint64_t c, bool on, Mode mode, uint64_t* sum,
                            int64_t* neg)
{
    enterHandler(Selector::Scalars, target);
    // b: i32 in MIN_TEMP..=125; c: u64 in 1..=BLOB_MAX; on: bool; mode: Mode.
    FUZZ_ASSERT(b >= -40 && b <= 125, "scalars: b = %d outside -40..=125", b);
    FUZZ_ASSERT(c >= 1 && c <= 65536, "scalars: c = %llu outside 1..=65536", static_cast<unsigned long long>(c));
    FUZZ_ASSERT(byteOf(&on) <= 1, "scalars: on is not a bool (%#x)", byteOf(&on));
    FUZZ_ASSERT(isModeValue(byteOf(&mode)), "scalars: mode = %#x is not a declared Mode", byteOf(&mode));
    FUZZ_ASSERT(sum != nullptr && neg != nullptr, "scalars: NULL output");
    const uint64_t* in = g_case->scalarIn;
    FUZZ_ASSERT(a == in[0] && sx(b) == in[1] && c == in[2] && (on ? 1u : 0u) == in[3] &&
                    static_cast<uint64_t>(mode) == in[4],
                "scalars: received (%u, %d, %llu, %d, %u), not what was sent", a, b,
                static_cast<unsigned long long>(c), on, static_cast<unsigned>(mode));
    *sum = scalarsSum(a, c, on, mode);
    *neg = scalarsNeg(b);
    return g_case->handlerRet;
}

kern_return_t HandleStructs(OSObject* target, const Config& config, Config* echo)
{
    enterHandler(Selector::Structs, target);
    assertConfig("structs", config);
    structsEcho(reinterpret_cast<const uint8_t*>(&config), echo);
    return g_case->handlerRet;
}

kern_return_t HandleMixed(OSObject* target, uint32_t index, const Point& point, bool* ok, Config* config)
{
    enterHandler(Selector::Mixed, target);
    FUZZ_ASSERT(index <= 3, "mixed: index = %u outside 0..4", index);
    FUZZ_ASSERT(index == g_case->scalarIn[0], "mixed: index %u was not sent", index);
    if (exact()) {
        FUZZ_ASSERT(memcmp(&point, g_inputBytes, kPointSize) == 0, "mixed: the point differs from the bytes sent");
    }
    *ok = (index % 2) == 1;
    mixedConfig(index, point, config);
    return g_case->handlerRet;
}

kern_return_t HandleWide(OSObject* target, uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4,
                         uint64_t a5, uint64_t a6, uint64_t a7, uint64_t a8, uint64_t a9, uint64_t a10, uint64_t a11,
                         uint64_t a12, uint64_t a13, uint64_t a14, uint64_t a15, uint64_t* b0, uint64_t* b1,
                         uint64_t* b2, uint64_t* b3, uint64_t* b4, uint64_t* b5, uint64_t* b6, uint64_t* b7,
                         uint64_t* b8, uint64_t* b9, uint64_t* b10, uint64_t* b11, uint64_t* b12, uint64_t* b13,
                         uint64_t* b14, uint64_t* b15)
{
    enterHandler(Selector::Wide, target);
    const uint64_t in[16] = {a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15};
    uint64_t* out[16] = {b0, b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12, b13, b14, b15};
    for (unsigned i = 0; i < 16; i++) {
        FUZZ_ASSERT(in[i] == g_case->scalarIn[i], "wide: a%u = %#llx was not sent", i,
                    static_cast<unsigned long long>(in[i]));
        *out[i] = wideOut(in[i], i);
    }
    return g_case->handlerRet;
}

kern_return_t HandleBigIn(OSObject* target, const Big& big, uint64_t* checksum)
{
    enterHandler(Selector::BigIn, target);
    if (exact()) {
        FUZZ_ASSERT(memcmp(&big, g_inputBytes, kBigSize) == 0, "big_in: the struct differs from the bytes sent");
    }
    *checksum = bigChecksum(reinterpret_cast<const uint8_t*>(&big));
    return g_case->handlerRet;
}

kern_return_t HandleBigOut(OSObject* target, uint64_t seed, Big* big)
{
    enterHandler(Selector::BigOut, target);
    FUZZ_ASSERT(seed == g_case->scalarIn[0], "big_out: seed was not sent");
    for (size_t i = 0; i < 600; i++) {
        big->words[i] = bigWord(seed, i);
    }
    return g_case->handlerRet;
}

kern_return_t HandleWriteBlob(OSObject* target, const uint8_t* data, uint32_t data_length, uint32_t* written)
{
    enterHandler(Selector::WriteBlob, target);
    // data: &[u8; 1..=BLOB_MAX]
    FUZZ_ASSERT(data_length >= 1 && data_length <= kBlobMax, "write_blob: %u bytes outside 1..=65536", data_length);
    FUZZ_ASSERT(data != nullptr, "write_blob: NULL data");
    // Reads every byte: ASan checks the bounds of what the thunk passed.
    uint64_t sum = 0;
    for (uint32_t i = 0; i < data_length; i++) {
        sum += data[i];
    }
    g_sink = sum;
    if (exact()) {
        FUZZ_ASSERT(data_length == g_case->inLength, "write_blob: %u bytes, %llu sent", data_length,
                    static_cast<unsigned long long>(g_case->inLength));
        FUZZ_ASSERT(memcmp(data, g_inputBytes, data_length) == 0, "write_blob: the bytes differ from those sent");
    }
    *written = data_length;
    return g_case->handlerRet;
}

kern_return_t HandleReadName(OSObject* target, uint8_t* name, uint32_t* name_length)
{
    enterHandler(Selector::ReadName, target);
    FUZZ_ASSERT(name != nullptr && name_length != nullptr, "read_name: NULL output");
    for (uint32_t i = 0; i < kNameLen; i++) {  // the buffer holds NAME_LEN bytes (ASan checks)
        name[i] = nameByte(i);
    }
    *name_length = g_case->nameLength;
    return g_case->handlerRet;
}

kern_return_t HandleReadLog(OSObject* target, uint32_t max_lines, OSData** log)
{
    enterHandler(Selector::ReadLog, target);
    FUZZ_ASSERT(max_lines == g_case->scalarIn[0], "read_log: max_lines %u was not sent", max_lines);
    FUZZ_ASSERT(log != nullptr && *log == nullptr, "read_log: the output is not an empty slot");
    OSData* data = OSData::withCapacity(0);
    if (data == nullptr) {
        return kIOReturnNoMemory;
    }
    for (uint32_t i = 0; i < logLines(max_lines); i++) {
        char line[32];
        int n = snprintf(line, sizeof(line), "line %u\n", i);
        data->appendBytes(line, static_cast<size_t>(n));
    }
    *log = data;  // also on error: the thunk must release it (LSan checks)
    return g_case->handlerRet;
}

kern_return_t HandleSetKey(OSObject* target, const uint8_t* key)
{
    enterHandler(Selector::SetKey, target);
    FUZZ_ASSERT(key != nullptr, "set_key: NULL key");
    uint8_t copy[16];
    memcpy(copy, key, 16);  // exactly 16 bytes (ASan checks)
    if (exact()) {
        FUZZ_ASSERT(memcmp(copy, g_inputBytes, kKeySize) == 0, "set_key: the key differs from the bytes sent");
    }
    return g_case->handlerRet;
}

kern_return_t HandlePing(OSObject* target, OSAction* completion)
{
    enterHandler(Selector::Ping, target);
    keepCompletion(completion);
    if (g_case->handlerRet == kIOReturnSuccess && g_case->completeNow) {
        CompletePing(OSDynamicCast(IOUserClient, target), completion, kIOReturnSuccess);
    }
    return g_case->handlerRet;
}

kern_return_t HandleMeasure(OSObject* target, uint8_t channel, OSAction* completion)
{
    enterHandler(Selector::Measure, target);
    FUZZ_ASSERT(channel <= 7, "measure: channel %u outside 0..8", channel);
    FUZZ_ASSERT(channel == g_case->scalarIn[0], "measure: channel %u was not sent", channel);
    keepCompletion(completion);
    if (g_case->handlerRet == kIOReturnSuccess && g_case->completeNow) {
        CompleteMeasure(OSDynamicCast(IOUserClient, target), completion, kIOReturnSuccess, measureValue(channel));
    }
    return g_case->handlerRet;
}

void completeSample(IOUserClient* client, OSAction* completion, uint64_t token)
{
    shapes::CompleteSample(client, completion, kIOReturnSuccess, sampleValue(token, 0), sampleValue(token, 1),
                           sampleValue(token, 2), sampleValue(token, 3), sampleValue(token, 4), sampleValue(token, 5),
                           sampleValue(token, 6), sampleValue(token, 7), sampleValue(token, 8), sampleValue(token, 9),
                           sampleValue(token, 10), sampleValue(token, 11), sampleValue(token, 12),
                           sampleValue(token, 13), sampleValue(token, 14), sampleValue(token, 15));
}

kern_return_t HandleSample(OSObject* target, OSAction* completion)
{
    enterHandler(Selector::Sample, target);
    keepCompletion(completion);
    if (g_case->handlerRet == kIOReturnSuccess && g_case->completeNow) {
        completeSample(OSDynamicCast(IOUserClient, target), completion, g_iteration);
    }
    return g_case->handlerRet;
}

kern_return_t HandleStart(OSObject* target, const Config& config, uint32_t* ticket, OSAction* completion)
{
    enterHandler(Selector::Start, target);
    assertConfig("start", config);
    FUZZ_ASSERT(ticket != nullptr, "start: NULL ticket");
    *ticket = config.gain + 42;
    keepCompletion(completion);
    if (g_case->handlerRet == kIOReturnSuccess && g_case->completeNow) {
        CompleteStart(OSDynamicCast(IOUserClient, target), completion, kIOReturnSuccess, Mode::Auto, Trim::Down,
                      true);
    }
    return g_case->handlerRet;
}

// #[unchecked]: DriverKit applied no checks; the handler validates by hand.
kern_return_t HandleRaw(OSObject* target, IOUserClientMethodArguments* arguments)
{
    enterHandler(Selector::Raw, target);
    FUZZ_ASSERT(arguments != nullptr, "raw: NULL arguments");
    if (arguments->scalarInputCount != 1 || arguments->scalarOutputCount != 1 || arguments->scalarInput == nullptr ||
        arguments->scalarOutput == nullptr) {
        return kIOReturnBadArgument;
    }
    if (g_case->handlerRet == kIOReturnSuccess) {
        arguments->scalarOutput[0] = arguments->scalarInput[0] * 3;
    }
    return g_case->handlerRet;
}

kern_return_t HandleMaybeAsync(OSObject* target, uint32_t x, OSAction* completion)
{
    enterHandler(Selector::MaybeAsync, target);
    FUZZ_ASSERT(x == g_case->scalarIn[0], "maybe_async: x = %u was not sent", x);
    FUZZ_ASSERT((completion != nullptr) == g_case->completion, "maybe_async: completion %p, sent %s",
                static_cast<void*>(completion), g_case->completion ? "one" : "none");
    if (g_case->handlerRet == kIOReturnSuccess) {
        CompleteMaybeAsync(OSDynamicCast(IOUserClient, target), completion, kIOReturnSuccess);
    }
    return g_case->handlerRet;
}

}  // namespace shapes

// ---------------------------------------------------------------------------
// A descriptor that can claim more than it maps
// ---------------------------------------------------------------------------

namespace {

// GetLength() says `claimed`; CreateMapping maps at most `mappable` bytes, from
// a heap block of exactly that size (ASan catches a read past the mapping).
class FuzzDescriptor : public IOMemoryDescriptor {
public:
    static FuzzDescriptor* make(uint64_t claimed, uint64_t mappable, uint64_t direction, const uint8_t* fill,
                                uint8_t pattern)
    {
        uint8_t* block = nullptr;
        if (mappable != 0) {
            block = static_cast<uint8_t*>(malloc(mappable));
            if (block == nullptr) {
                return nullptr;
            }
            if (fill != nullptr) {
                memcpy(block, fill, mappable);
            } else {
                memset(block, pattern, mappable);
            }
        }
        return new FuzzDescriptor(block, claimed, mappable, direction);
    }

    kern_return_t CreateMapping(uint64_t options, uint64_t address, uint64_t offset, uint64_t length,
                                uint64_t alignment, IOMemoryMap** map) override
    {
        if (mappable_ == 0) {
            if (map != nullptr) {
                *map = nullptr;
            }
            return kIOReturnError;  // "a failed map -> kIOReturnError" (§5-6)
        }
        uint64_t want = length == 0 ? mappable_ : length;
        if (want > mappable_) {
            want = mappable_;
        }
        return IOMemoryDescriptor::CreateMapping(options, address, offset, want, alignment, map);
    }

    const uint8_t* block() const { return bytes_; }
    uint64_t mappable() const { return mappable_; }

private:
    FuzzDescriptor(uint8_t* block, uint64_t claimed, uint64_t mappable, uint64_t direction)
        : IOMemoryDescriptor(block, claimed, direction, false, block), mappable_(mappable)
    {
    }

    uint64_t mappable_;
};

// ---------------------------------------------------------------------------
// Generating a call
// ---------------------------------------------------------------------------

uint64_t interestingValue(Rng& r)
{
    static const uint64_t values[] = {
        0, 1, 2, 3, 4, 7, 8, 15, 16, 31, 32, 124, 125, 126, 127, 128, 254, 255, 256, 257, 65535, 65536, 65537,
        0x7fffffffULL, 0x80000000ULL, 0xfffffffeULL, 0xffffffffULL, 0x100000000ULL, 0x1000000ffULL,
        0xffffffd8ULL,                                   // -40 as a zero-extended i32
        sx(-1), sx(-2), sx(-39), sx(-40), sx(-41), sx(INT32_MIN), sx(static_cast<int64_t>(INT32_MIN) - 1),
        static_cast<uint64_t>(INT64_MAX), sx(INT64_MIN), UINT64_MAX, kHandshake,
    };
    if (r.chance(1, 4)) {
        return r.next();
    }
    return values[r.below(sizeof(values) / sizeof(values[0]))];
}

uint64_t wellFormedValue(Rng& r, const ScalarSpec& s)
{
    for (int attempt = 0; attempt < 64; attempt++) {
        uint64_t v;
        switch (s.kind) {
        case kBool: v = r.small(2); break;
        case kModeEnum: {
            const uint64_t modes[] = {0, 1, 0xff};
            v = modes[r.small(3)];
            break;
        }
        case kU8: v = r.small(256); break;
        case kU32: v = r.chance(1, 4) ? 0xffffffffULL - r.small(2) : r.next() & 0xffffffffULL; break;
        case kI32:
            if (s.ranged) {
                v = sx(s.lo + static_cast<int64_t>(r.below(static_cast<uint64_t>(s.hi - s.lo + 1))));
            } else {
                v = sx(static_cast<int32_t>(r.next()));
            }
            break;
        case kU64:
        default: v = r.chance(1, 4) ? interestingValue(r) : r.next(); break;
        }
        if (s.ranged && s.kind != kI32 && s.kind != kBool && s.kind != kModeEnum) {
            const uint64_t lo = static_cast<uint64_t>(s.lo);
            const uint64_t span = static_cast<uint64_t>(s.hi) - lo + 1;
            const uint64_t pick = r.small(4);
            v = pick == 0 ? lo : pick == 1 ? lo + span - 1 : lo + r.below(span);
        }
        if (scalarOk(s, v)) {
            return v;
        }
    }
    return static_cast<uint64_t>(s.lo);
}

uint32_t interestingCount(Rng& r, uint32_t declared)
{
    static const uint32_t counts[] = {0, 1, 2, 3, 4, 5, 15, 16, 17, 32, 0xfffffffeU, 0xffffffffU};
    const uint32_t pick = r.small(4);
    if (pick == 0) {
        return declared + 1;
    }
    if (pick == 1 && declared > 0) {
        return declared - 1;
    }
    return counts[r.below(sizeof(counts) / sizeof(counts[0]))];
}

uint64_t interestingLength(Rng& r, uint64_t declared)
{
    static const uint64_t lengths[] = {0,    1,    2,    7,    8,    9,     15,    16,    17,    31,   32,
                                       33,   87,   88,   89,   4095, 4096,  4097,  4799,  4800,  4801, 65535,
                                       65536, 65537, 69999};
    const uint32_t pick = r.small(8);
    if (declared != kVariable && declared != 0 && pick < 3) {
        return declared + pick - 1;  // one short, exact, one long
    }
    if (pick == 3) {
        return r.below(5000);
    }
    return lengths[r.below(sizeof(lengths) / sizeof(lengths[0]))];
}

uint64_t interestingCapacity(Rng& r, uint64_t declared)
{
    static const uint64_t capacities[] = {0,     1,     31,    32,          33,          87,
                                          88,    89,    4096,  4097,        4799,        4800,
                                          4801,  65536, 70000, 0xfffffffeULL, 0xffffffffULL, 0x100000000ULL,
                                          0x1000000ffULL, UINT64_MAX};
    if (r.chance(1, 4)) {
        return declared;
    }
    return capacities[r.below(sizeof(capacities) / sizeof(capacities[0]))];
}

// How the kernel delivers `length` bytes of input (§3.2-5).
void kernelDelivery(Case& c, uint64_t length)
{
    c.inLength = length;
    c.inMappable = length;
    c.delivery = length == 0 ? kNoInput : length <= 4096 ? kInline : kDescriptor;
}

// How the kernel offers `capacity` bytes of output (§3.2-5).
void kernelOutput(Case& c, uint64_t capacity)
{
    c.outMax = capacity;
    c.outDescriptor = capacity > 4096 && capacity != kVariable;
    c.outClaimed = capacity;
    c.outMappable = capacity < kMaxBuffer ? capacity : kMaxBuffer;
}

uint64_t atMost(uint64_t v, uint64_t limit)
{
    return v < limit ? v : limit;
}

// What the driver can build: inline data it allocates (so at most
// kMaxBuffer bytes), descriptors that map no more than they claim and no more
// than kMaxBuffer. The model and the call are both built from the result.
void normalise(Case& c)
{
    if (c.delivery == kInline) {
        c.inLength = atMost(c.inLength, kMaxBuffer - 1);
    }
    if (c.delivery == kBoth) {
        c.bothLength = atMost(c.bothLength, kMaxBuffer - 1);
    }
    c.inMappable = atMost(atMost(c.inMappable, c.inLength), kMaxBuffer);
    c.outMappable = atMost(atMost(c.outMappable, c.outClaimed), kMaxBuffer);
}

const Spec kNoSpec = {"none", false, false, kSync, 0, {}, kInNone, 0, kOutNone};

const Spec& specFor(uint64_t selector)
{
    return selector < kSelectors ? kSpecs[selector] : kNoSpec;
}

// One mutation away from the well-formed call.
void mutate(Rng& r, Case& c, const Spec& s)
{
    switch (r.small(15)) {
    case 0:
        c.completion = !c.completion;
        break;
    case 1:
        c.scalarInCount = interestingCount(r, s.nIn);
        break;
    case 2:
        c.scalarInPtr = static_cast<PtrKind>(r.small(3));
        break;
    case 3:
    case 4: {
        const uint32_t n = c.scalarInCount == 0 ? 1 : c.scalarInCount > 16 ? 16 : c.scalarInCount;
        c.scalarIn[r.below(n)] = interestingValue(r);
        break;
    }
    case 5:
        c.scalarOutCount = interestingCount(r, s.nOut);
        break;
    case 6:
        c.scalarOutPtr = static_cast<PtrKind>(r.small(3));
        break;
    case 7:
        kernelDelivery(c, interestingLength(r, inSize(s.structIn)));
        break;
    case 8: {  // another way in: inline, descriptor, both, none
        const uint32_t how = r.small(4);
        if (how == 0) {
            c.delivery = kInline;
        } else if (how == 1) {
            c.delivery = kDescriptor;
            c.inMappable = c.inLength;
        } else if (how == 2) {
            c.delivery = kBoth;
            c.inMappable = c.inLength;
            c.bothLength = interestingLength(r, inSize(s.structIn));
        } else {
            c.delivery = kNoInput;
        }
        break;
    }
    case 9:  // a descriptor that maps less than it claims
        if (c.delivery != kDescriptor) {
            c.delivery = kDescriptor;
            c.inMappable = c.inLength;
        }
        if (r.chance(1, 4)) {
            c.inLength = r.chance(1, 2) ? 0xffffffffULL : 1ULL << 40;  // claims far more
        } else {
            c.inMappable = c.inLength == 0 ? 0 : r.below(c.inLength);
        }
        break;
    case 10:  // a Config validity byte (mode, enabled, trim)
        c.corrupt = 1 + r.small(3);
        c.corruptValue = static_cast<uint16_t>(r.chance(1, 2) ? r.small(4) : r.next());
        break;
    case 11:
        kernelOutput(c, interestingCapacity(r, outSize(s.structOut)));
        break;
    case 12:  // an output descriptor where the kernel gives none, or none where it gives one
        c.outDescriptor = !c.outDescriptor;
        c.outClaimed = c.outMax;
        c.outMappable = c.outMax < kMaxBuffer ? c.outMax : kMaxBuffer;
        break;
    case 13:  // an output descriptor that maps less than the output needs
        c.outDescriptor = true;
        c.outClaimed = c.outMax;
        c.outMappable = r.below((c.outMax < kMaxBuffer ? c.outMax : kMaxBuffer) + 1);
        break;
    default:  // what the dispatch must ignore, and NULL pointers
        switch (r.small(5)) {
        case 0: c.version = r.next(); break;
        case 1: c.argsSelector = interestingValue(r); break;
        case 2: c.garbageReserved = true; break;
        case 3: c.nullArguments = true; break;
        default: c.nullClient = true; break;
        }
        break;
    }
}

void generate(Rng& r, Case& c)
{
    memset(&c, 0, sizeof(c));
    const uint32_t which = r.small(100);
    if (which < 88) {
        c.selector = r.small(kSelectors);
    } else if (which < 94) {
        c.selector = kHandshake;
    } else {
        static const uint64_t odd[] = {14, 17, 18, 255, 256, 1000, kHandshake - 1, kHandshake + 1,
                                       0xffffffffULL, 0x100000000ULL, 0x10000000aULL, UINT64_MAX};
        c.selector = r.chance(1, 8) ? r.next() : odd[r.below(sizeof(odd) / sizeof(odd[0]))];
    }
    const Spec& s = specFor(c.selector);
    c.argsSelector = c.selector;
    c.version = kIOUserClientMethodArgumentsCurrentVersion;

    // The well-formed call, as the kernel would deliver it.
    c.completion = s.completion == kAsync || (s.completion == kEither && r.chance(1, 2));
    c.scalarInCount = c.selector == kHandshake ? 0 : s.nIn;
    c.scalarInPtr = r.chance(1, 4) ? kPtrSixteen : kPtrExact;
    for (uint32_t i = 0; i < 16; i++) {
        c.scalarIn[i] = i < s.nIn ? wellFormedValue(r, s.in[i]) : r.next();
    }
    uint64_t length = inSize(s.structIn);
    if (s.structIn == kInBlob) {
        static const uint64_t blobLengths[] = {1, 2, 4095, 4096, 4097, 65535, 65536};
        const uint32_t pick = r.small(16);
        length = pick < 3 ? blobLengths[r.below(sizeof(blobLengths) / sizeof(blobLengths[0]))]
                 : pick < 14 ? 1 + r.below(300)
                             : 1 + r.below(9000);
    }
    kernelDelivery(c, length);
    c.payloadSeed = r.next();
    c.scalarOutCount = c.selector == kHandshake ? 2 : s.nOut;
    c.scalarOutPtr = r.chance(1, 4) ? kPtrSixteen : kPtrExact;
    kernelOutput(c, outSize(s.structOut));

    c.handlerRet = kIOReturnSuccess;
    if (r.chance(1, 20)) {
        static const kern_return_t errors[] = {kIOReturnNotReady, kIOReturnBusy, kIOReturnError, kIOReturnAborted,
                                               kIOReturnNoSpace};
        c.handlerRet = errors[r.below(sizeof(errors) / sizeof(errors[0]))];
    }
    c.nameLength = r.small(static_cast<uint32_t>(kNameLen) + 1);
    if (r.chance(1, 20)) {
        static const uint32_t tooLong[] = {33, 64, 4096, UINT32_MAX};
        c.nameLength = tooLong[r.small(4)];
    }
    c.completeNow = r.chance(1, 2);

    // Then up to four mutations; two iterations in five stay well formed.
    if (r.small(5) >= 2) {
        const uint32_t n = 1 + r.small(4);
        for (uint32_t i = 0; i < n; i++) {
            mutate(r, c, s);
        }
    }
    normalise(c);
}

// ---------------------------------------------------------------------------
// The call's objects, exactly sized
// ---------------------------------------------------------------------------

constexpr uint64_t kCanary = 0xA5A5A5A5A5A5A5A5ULL;
constexpr uint8_t kOutPattern = 0xCD;

struct Live {
    IOUserClientMethodArguments args;
    uint64_t* scalarIn;
    uint64_t* scalarOut;
    size_t scalarOutSlots;
    uint8_t* inBytes;            // the OSData's backing (exact size), or NULL
    OSData* inData;
    FuzzDescriptor* inDesc;
    uint8_t* seen;               // the bytes the thunk should see (a copy, for the checks)
    uint64_t seenLength;
    FuzzDescriptor* outDesc;
    OSAction* action;
};

uint64_t* scalarArray(PtrKind kind, uint32_t count, size_t* slots)
{
    if (kind == kPtrNull) {
        *slots = 0;
        return nullptr;
    }
    // Exactly `count` slots (ASan guards the end), but never more than 64;
    // a larger count gets 16 slots, as the iig stub's arrays have.
    size_t n = kind == kPtrSixteen || count > 64 ? 16 : count;
    *slots = n;
    uint64_t* p = static_cast<uint64_t*>(malloc(n == 0 ? 1 : n * sizeof(uint64_t)));
    if (p == nullptr) {
        fprintf(stderr, "dispatch-fuzz: out of memory\n");
        abort();
    }
    return p;
}

// The structure input's bytes: the payload, with a valid Config's validity
// bytes where one fits, then the corruption asked for.
void payload(const Case& c, uint8_t* p, size_t n)
{
    fillBytes(p, n, c.payloadSeed);
    if (n >= kConfigSize) {
        const uint8_t modes[] = {0, 1, 0xff};
        p[kModeOffset] = modes[c.payloadSeed % 3];
        p[kEnabledOffset] = static_cast<uint8_t>((c.payloadSeed >> 8) & 1);
        const int16_t trim = static_cast<int16_t>(static_cast<int>((c.payloadSeed >> 16) % 3) - 1);
        memcpy(p + kTrimOffset, &trim, sizeof(trim));
        if (c.corrupt == 1) {
            p[kModeOffset] = static_cast<uint8_t>(c.corruptValue);
        } else if (c.corrupt == 2) {
            p[kEnabledOffset] = static_cast<uint8_t>(c.corruptValue);
        } else if (c.corrupt == 3) {
            memcpy(p + kTrimOffset, &c.corruptValue, sizeof(c.corruptValue));
        }
    }
}

uint8_t* allocBytes(uint64_t n)
{
    uint8_t* p = static_cast<uint8_t*>(malloc(n == 0 ? 1 : static_cast<size_t>(n)));
    if (p == nullptr) {
        fprintf(stderr, "dispatch-fuzz: out of memory\n");
        abort();
    }
    return p;
}

void materialise(const Case& c, Live& l)
{
    memset(&l, 0, sizeof(l));
    IOUserClientMethodArguments& a = l.args;
    a.version = c.version;
    a.selector = c.argsSelector;
    if (c.garbageReserved) {
        fillBytes(reinterpret_cast<uint8_t*>(a.__reserved), sizeof(a.__reserved), c.payloadSeed ^ 0x5A5A);
    }

    size_t slots = 0;
    l.scalarIn = scalarArray(c.scalarInPtr, c.scalarInCount, &slots);
    for (size_t i = 0; i < slots; i++) {
        l.scalarIn[i] = i < 16 ? c.scalarIn[i] : 0;
    }
    a.scalarInput = l.scalarIn;
    a.scalarInputCount = c.scalarInCount;

    // Structure input. The inline OSData wraps a block of exactly its length.
    const bool inline_ = c.delivery == kInline || c.delivery == kBoth;
    const bool descriptor = c.delivery == kDescriptor || c.delivery == kBoth;
    const uint64_t dataLength = c.delivery == kBoth ? c.bothLength : c.inLength;
    if (inline_) {
        l.inBytes = allocBytes(dataLength);
        payload(c, l.inBytes, static_cast<size_t>(dataLength));
        l.inData = OSData::withBytesNoCopy(dataLength == 0 ? nullptr : l.inBytes, static_cast<size_t>(dataLength));
        a.structureInput = l.inData;
    }
    if (descriptor) {
        const uint64_t mappable = c.inMappable;
        uint8_t* fill = allocBytes(mappable);
        payload(c, fill, static_cast<size_t>(mappable));
        l.inDesc = FuzzDescriptor::make(c.inLength, mappable, kIOMemoryDirectionOut, fill, 0);
        free(fill);
        a.structureInputDescriptor = l.inDesc;
    }
    // What the thunk should read: the descriptor's bytes, else the OSData's.
    if (c.delivery == kDescriptor && l.inDesc != nullptr) {
        l.seenLength = l.inDesc->mappable();
        l.seen = allocBytes(l.seenLength);
        if (l.seenLength != 0) {
            memcpy(l.seen, l.inDesc->block(), static_cast<size_t>(l.seenLength));
        }
    } else if (c.delivery == kInline) {
        l.seenLength = dataLength;
        l.seen = allocBytes(l.seenLength);
        memcpy(l.seen, l.inBytes, static_cast<size_t>(dataLength));
    }

    l.scalarOut = scalarArray(c.scalarOutPtr, c.scalarOutCount, &l.scalarOutSlots);
    for (size_t i = 0; i < l.scalarOutSlots; i++) {
        l.scalarOut[i] = kCanary ^ i;
    }
    a.scalarOutput = l.scalarOut;
    a.scalarOutputCount = c.scalarOutCount;

    a.structureOutputMaximumSize = c.outMax;
    if (c.outDescriptor) {
        l.outDesc = FuzzDescriptor::make(c.outClaimed, c.outMappable, kIOMemoryDirectionIn, nullptr, kOutPattern);
        a.structureOutputDescriptor = l.outDesc;
    }

    if (c.completion) {
        // The kernel's action: the app's async reference, [0] the wake port (§4.2-1, §4.3-2).
        if (OSAction::Create(nullptr, 0, 0, 8 * sizeof(uint64_t), &l.action) != kIOReturnSuccess) {
            fprintf(stderr, "dispatch-fuzz: OSAction::Create failed\n");
            abort();
        }
        uint64_t* ref = static_cast<uint64_t*>(l.action->GetReference());
        ref[0] = dextlink_shim::kShimWakePort | dextlink_shim::kIOUCAsync64Flag;
        ref[1] = 0xCA11BAC4;
        ref[2] = g_iteration;  // the refcon: this call's token
        a.completion = l.action;
    }
}

void release(Live& l)
{
    OSSafeReleaseNULL(l.args.structureOutput);  // "released by the OS" (§3.3-1)
    OSSafeReleaseNULL(l.inData);
    OSSafeReleaseNULL(l.inDesc);
    OSSafeReleaseNULL(l.outDesc);
    OSSafeReleaseNULL(l.action);
    free(l.inBytes);
    free(l.seen);
    free(l.scalarIn);
    free(l.scalarOut);
}

// ---------------------------------------------------------------------------
// The model: must this call be refused, and how?
// ---------------------------------------------------------------------------

Expect refuse(const char* why)
{
    return Expect{false, false, false, kIOReturnBadArgument, why};
}

Expect refuseByTable(const char* why)
{
    return Expect{false, false, true, kIOReturnBadArgument, why};
}

Expect runs(IOReturn result, const char* why)
{
    return Expect{true, false, false, result, why};
}

Expect decide(const Case& c, const Live& l)
{
    if (c.nullArguments || c.nullClient) {
        return refuse("NULL arguments or user client");
    }
    if (c.selector == kHandshake) {
        const bool ok = !c.completion && c.scalarInCount == 0 && c.delivery == kNoInput &&
                        c.scalarOutPtr != kPtrNull && c.scalarOutCount == 2 && c.outMax == 0 && !c.outDescriptor;
        return ok ? Expect{false, false, false, kIOReturnSuccess, "the handshake"} : refuse("a malformed handshake");
    }
    const Spec& s = specFor(c.selector);
    if (!s.present) {
        return Expect{false, false, false, kIOReturnUnsupported, "a reserved or unknown selector (§2.2-9, §2.2-10)"};
    }
    if (s.unchecked) {
        // #[unchecked]: straight to the handler, which validates by hand.
        const bool ok = c.scalarInCount == 1 && c.scalarOutCount == 1 && c.scalarInPtr != kPtrNull &&
                        c.scalarOutPtr != kPtrNull;
        return runs(ok ? c.handlerRet : kIOReturnBadArgument, "an #[unchecked] method");
    }

    // DriverKit's checks of the entry the schema implies (§2.2-1..7).
    if (s.completion == kAsync && !c.completion) {
        return refuseByTable("§2.2-1: an async method without a completion");
    }
    if (s.completion == kSync && c.completion) {
        return refuseByTable("§2.2-1: a completion for a synchronous method");
    }
    if (c.scalarInCount != s.nIn) {
        return refuseByTable("§2.2-2: scalarInputCount differs from the schema's");
    }
    // The descriptor's length when there is one, else the OSData's, else 0 (§2.2-3).
    const uint64_t tableInput = (c.delivery == kDescriptor || c.delivery == kBoth) ? c.inLength
                                : c.delivery == kInline                            ? c.inLength
                                                                                   : 0;
    if (s.structIn != kInBlob && tableInput != inSize(s.structIn)) {
        return refuseByTable("§2.2-3: structure input size differs from the schema's");
    }
    if (c.scalarOutCount != s.nOut) {
        return refuseByTable("§2.2-4: scalarOutputCount differs from the schema's");
    }
    if (s.structOut != kOutLog && c.outMax != outSize(s.structOut)) {
        return refuseByTable("§2.2-5: structureOutputMaximumSize differs from the schema's");
    }

    // What the schema promises beyond the table (the thunks' checks).
    if (s.nIn > 0 && c.scalarInPtr == kPtrNull) {
        return refuse("scalarInput is NULL");
    }
    if (s.nOut > 0 && c.scalarOutPtr == kPtrNull) {
        return refuse("scalarOutput is NULL");
    }
    for (uint32_t i = 0; i < s.nIn; i++) {
        if (!scalarOk(s.in[i], c.scalarIn[i])) {
            return refuse("a scalar outside its declared type or range");
        }
    }
    if (s.structOut == kOutLog && c.outMax != kVariable) {
        return refuse("a variable output without the var-output call (§3.3-3)");
    }
    if (s.structIn != kInNone) {
        if (c.delivery == kBoth) {
            // The kernel never sends both (§3.2-5); the schema does not say
            // which one counts. Any answer will do, but a handler still only
            // sees checked values.
            return Expect{true, true, false, kIOReturnSuccess, "input both inline and as a descriptor"};
        }
        if (c.delivery == kDescriptor && (c.inLength == 0 || c.inMappable < c.inLength)) {
            return refuse("the input descriptor maps less than its length");
        }
        if (s.structIn == kInBlob && (tableInput < 1 || tableInput > kBlobMax)) {
            return refuse("a blob outside 1..=BLOB_MAX bytes");
        }
        if (s.structIn == kInConfig && !configBytesValid(l.seen)) {
            return refuse("a Config with an invalid bool or enum");
        }
    }

    // An output descriptor must map the whole output (for a bounded one, its
    // bound) before the handler runs: a call whose output cannot be returned
    // has no effect.
    if (c.outDescriptor && (s.structOut == kOutConfig || s.structOut == kOutBig || s.structOut == kOutName)) {
        const uint64_t needed = s.structOut == kOutName ? kNameLen : outSize(s.structOut);
        if (c.outMappable == 0 || c.outMappable < needed) {
            return refuse("the output descriptor maps less than the output");
        }
    }

    // The handler runs.
    if (c.handlerRet != kIOReturnSuccess) {
        return runs(c.handlerRet, "the handler's own error");
    }
    if (s.structOut == kOutName && c.nameLength > kNameLen) {
        return runs(kIOReturnInternalError, "the handler broke its output bound");
    }
    return runs(kIOReturnSuccess, "a well-formed call");
}

// ---------------------------------------------------------------------------
// Running and checking one call
// ---------------------------------------------------------------------------

void checkScalarOut(const Live& l, uint32_t i, uint64_t expected, const char* what)
{
    FUZZ_ASSERT(l.scalarOut != nullptr && i < l.scalarOutSlots, "%s: no scalar output slot %u", what, i);
    FUZZ_ASSERT(l.scalarOut[i] == expected, "%s: scalar output %u is %#llx, expected %#llx", what, i,
                static_cast<unsigned long long>(l.scalarOut[i]), static_cast<unsigned long long>(expected));
}

void checkScalarsUntouched(const Live& l, size_t from, const char* what)
{
    for (size_t i = from; i < l.scalarOutSlots; i++) {
        FUZZ_ASSERT(l.scalarOut[i] == (kCanary ^ i), "%s: scalar output slot %zu was written", what, i);
    }
}

void checkOutDescriptorUntouched(const Live& l, uint64_t from, const char* what)
{
    if (l.outDesc == nullptr) {
        return;
    }
    static uint8_t pattern[4096];
    if (pattern[0] != kOutPattern) {
        memset(pattern, kOutPattern, sizeof(pattern));
    }
    const uint8_t* block = l.outDesc->block();
    for (uint64_t i = from; i < l.outDesc->mappable(); i += sizeof(pattern)) {
        const uint64_t left = l.outDesc->mappable() - i;
        const size_t n = left < sizeof(pattern) ? static_cast<size_t>(left) : sizeof(pattern);
        FUZZ_ASSERT(memcmp(block + i, pattern, n) == 0, "%s: output descriptor bytes %llu..%llu were written", what,
                    static_cast<unsigned long long>(i), static_cast<unsigned long long>(i + n));
    }
}

// The structure output a successful call returned: `n` bytes, through the
// descriptor when there is one (§3.3-2), else as an OSData (§3.3-1, §3.3-3).
void checkStructOut(const Case& c, const Live& l, const uint8_t* expected, size_t n, bool viaDescriptor)
{
    const char* what = kSpecs[c.selector].name;
    if (viaDescriptor) {
        FUZZ_ASSERT(l.args.structureOutput == nullptr, "%s: an OSData beside the output descriptor", what);
        FUZZ_ASSERT(n <= l.outDesc->mappable() && memcmp(l.outDesc->block(), expected, n) == 0,
                    "%s: the output descriptor does not hold the output", what);
        checkOutDescriptorUntouched(l, n, what);
        return;
    }
    OSData* out = l.args.structureOutput;
    FUZZ_ASSERT(out != nullptr, "%s: no structure output", what);
    FUZZ_ASSERT(out->getLength() == n, "%s: structure output of %zu bytes, expected %zu", what, out->getLength(), n);
    FUZZ_ASSERT(n == 0 || memcmp(out->getBytesNoCopy(), expected, n) == 0, "%s: structure output differs", what);
    checkOutDescriptorUntouched(l, 0, what);
}

void checkOutputs(const Case& c, const Live& l)
{
    const uint64_t* in = c.scalarIn;
    const char* what = kSpecs[c.selector].name;
    const bool desc = c.outDescriptor;
    switch (static_cast<Selector>(c.selector)) {
    case Selector::Scalars: {
        const uint8_t a = static_cast<uint8_t>(in[0]);
        const int32_t b = static_cast<int32_t>(static_cast<int64_t>(in[1]));
        const Mode mode = static_cast<Mode>(static_cast<uint8_t>(in[4]));
        checkScalarOut(l, 0, scalarsSum(a, in[2], in[3] != 0, mode), what);
        checkScalarOut(l, 1, sx(scalarsNeg(b)), what);
        checkScalarsUntouched(l, 2, what);
        break;
    }
    case Selector::Structs: {
        Config echo;
        structsEcho(l.seen, &echo);
        checkStructOut(c, l, reinterpret_cast<const uint8_t*>(&echo), sizeof(echo), desc);
        break;
    }
    case Selector::Mixed: {
        const uint32_t index = static_cast<uint32_t>(in[0]);
        shapes::Point point;
        memcpy(&point, l.seen, sizeof(point));
        Config config;
        mixedConfig(index, point, &config);
        checkScalarOut(l, 0, index % 2 == 1 ? 1 : 0, what);
        checkScalarsUntouched(l, 1, what);
        checkStructOut(c, l, reinterpret_cast<const uint8_t*>(&config), sizeof(config), desc);
        break;
    }
    case Selector::Wide:
        for (unsigned i = 0; i < 16; i++) {
            checkScalarOut(l, i, wideOut(in[i], i), what);
        }
        break;
    case Selector::BigIn:
        checkScalarOut(l, 0, bigChecksum(l.seen), what);
        checkScalarsUntouched(l, 1, what);
        break;
    case Selector::BigOut: {
        shapes::Big* big = static_cast<shapes::Big*>(malloc(sizeof(shapes::Big)));
        FUZZ_ASSERT(big != nullptr, "out of memory");
        for (size_t i = 0; i < 600; i++) {
            big->words[i] = bigWord(in[0], i);
        }
        checkStructOut(c, l, reinterpret_cast<const uint8_t*>(big), sizeof(*big), desc);
        free(big);
        break;
    }
    case Selector::WriteBlob:
        checkScalarOut(l, 0, c.inLength, what);
        checkScalarsUntouched(l, 1, what);
        break;
    case Selector::ReadName: {
        uint8_t name[kNameLen];
        for (uint32_t i = 0; i < kNameLen; i++) {
            name[i] = nameByte(i);
        }
        checkStructOut(c, l, name, c.nameLength, desc);
        break;
    }
    case Selector::ReadLog: {
        char text[7 * 16];
        const size_t n = logText(static_cast<uint32_t>(in[0]), text, sizeof(text));
        checkStructOut(c, l, reinterpret_cast<const uint8_t*>(text), n, false);
        break;
    }
    case Selector::Start: {
        uint32_t gain;
        memcpy(&gain, l.seen + kGainOffset, sizeof(gain));
        checkScalarOut(l, 0, static_cast<uint64_t>(gain + 42), what);
        checkScalarsUntouched(l, 1, what);
        break;
    }
    case Selector::Raw:
        checkScalarOut(l, 0, in[0] * 3, what);
        checkScalarsUntouched(l, 1, what);
        break;
    case Selector::SetKey:
    case Selector::Ping:
    case Selector::Measure:
    case Selector::Sample:
    case Selector::MaybeAsync:
        checkScalarsUntouched(l, 0, what);
        break;
    }
    const OutShape out = kSpecs[c.selector].structOut;
    if (out == kOutNone) {
        FUZZ_ASSERT(l.args.structureOutput == nullptr, "%s: a structure output nobody asked for", what);
        checkOutDescriptorUntouched(l, 0, what);
    }
}

// The completion the user client recorded: the payload the schema types.
void checkCompletionRecorded(const Case& c, const Live& l, uint32_t before)
{
    const char* what = kSpecs[c.selector].name;
    FUZZ_ASSERT(g_client->completion_count == before + 1, "%s: %u completions sent, expected 1", what,
                g_client->completion_count - before);
    FUZZ_ASSERT(g_client->last_completion_action == l.action, "%s: completed another call's action", what);
    FUZZ_ASSERT(static_cast<uint64_t*>(l.action->GetReference())[2] == g_iteration,
                "%s: the action carries another token", what);
    FUZZ_ASSERT(g_client->last_completion_status == kIOReturnSuccess, "%s: completion status %#x", what,
                static_cast<unsigned>(g_client->last_completion_status));
    const uint64_t* d = g_client->last_completion_data;
    switch (static_cast<Selector>(c.selector)) {
    case Selector::Measure:
        FUZZ_ASSERT(g_client->last_completion_count == 1 &&
                        d[0] == sx(measureValue(static_cast<uint8_t>(c.scalarIn[0]))),
                    "measure: wrong completion payload");
        break;
    case Selector::Sample:
        FUZZ_ASSERT(g_client->last_completion_count == 16, "sample: %u completion values",
                    g_client->last_completion_count);
        for (unsigned i = 0; i < 16; i++) {
            FUZZ_ASSERT(d[i] == sampleValue(g_iteration, i), "sample: completion value %u", i);
        }
        break;
    case Selector::Start:
        FUZZ_ASSERT(g_client->last_completion_count == 3 && d[0] == 0xff && d[1] == UINT64_MAX && d[2] == 1,
                    "start: wrong completion payload");
        break;
    default:
        FUZZ_ASSERT(g_client->last_completion_count == 0, "%s: %u completion values, expected none", what,
                    g_client->last_completion_count);
        break;
    }
    g_stats.completions++;
}

// Completes a call a handler kept, as the dext would later.
void completeDeferred(const Case& c)
{
    IOUserClient* client = g_client;
    switch (static_cast<Selector>(c.selector)) {
    case Selector::Ping: shapes::CompletePing(client, g_deferred, kIOReturnSuccess); break;
    case Selector::Measure:
        shapes::CompleteMeasure(client, g_deferred, kIOReturnSuccess,
                                measureValue(static_cast<uint8_t>(c.scalarIn[0])));
        break;
    case Selector::Sample: shapes::completeSample(client, g_deferred, g_iteration); break;
    case Selector::Start:
        shapes::CompleteStart(client, g_deferred, kIOReturnSuccess, Mode::Auto, Trim::Down, true);
        break;
    default: FUZZ_ASSERT(false, "a deferred completion for a synchronous method"); break;
    }
}

void runCase(const Case& c)
{
    Live l;
    materialise(c, l);
    const Expect e = decide(c, l);
    g_case = &c;
    g_expect = &e;
    g_inputBytes = l.seen;
    g_deferred = nullptr;
    const uint64_t handlersBefore = g_handlerCalls;
    const uint32_t completionsBefore = g_client->completion_count;

    kern_return_t kr;
    if (c.nullArguments) {
        kr = shapes::ExternalMethod(g_client, c.selector, nullptr);
    } else if (c.nullClient) {
        kr = shapes::ExternalMethod(nullptr, c.selector, &l.args);
    } else {
        kr = g_client->ExternalMethod(c.selector, &l.args, nullptr, nullptr, nullptr);
    }
    const uint64_t ran = g_handlerCalls - handlersBefore;
    g_stats.handlerCalls += ran;
    const char* what = c.selector < kSelectors ? kSpecs[c.selector].name : "selector";

    // Always: the input is read-only and every reference the call took is gone.
    if (l.inData != nullptr) {
        FUZZ_ASSERT(l.inData->getRetainCount() == 1, "%s: the input OSData is still retained", what);
        FUZZ_ASSERT(c.delivery != kInline || memcmp(l.inBytes, l.seen, static_cast<size_t>(l.seenLength)) == 0,
                    "%s: the structure input was written", what);
    }
    if (l.inDesc != nullptr) {
        FUZZ_ASSERT(l.inDesc->getRetainCount() == 1, "%s: the input descriptor (or a mapping) is still retained",
                    what);
        FUZZ_ASSERT(c.delivery != kDescriptor ||
                        l.seenLength == 0 || memcmp(l.inDesc->block(), l.seen, static_cast<size_t>(l.seenLength)) == 0,
                    "%s: the structure input descriptor was written", what);
    }
    if (l.outDesc != nullptr) {
        FUZZ_ASSERT(l.outDesc->getRetainCount() == 1, "%s: the output descriptor (or a mapping) is still retained",
                    what);
    }
    FUZZ_ASSERT(ran <= 1, "%s: %llu handlers ran for one call", what, static_cast<unsigned long long>(ran));
    FUZZ_ASSERT(g_client->null_action_completion_count == 0 && g_client->dropped_completion_count == 0,
                "%s: a completion with a NULL action or too many values", what);

    if (e.anyResult) {
        FUZZ_ASSERT(kr != kIOReturnSuccess || ran == 1, "%s: success without the handler", what);
        g_stats.anyOutcome++;
        if (g_deferred != nullptr) {
            completeDeferred(c);
            OSSafeReleaseNULL(g_deferred);
        }
    } else {
        FUZZ_ASSERT(kr == e.result, "%s: returned %#x, expected %#x (%s)", what, static_cast<unsigned>(kr),
                    static_cast<unsigned>(e.result), e.why);
        FUZZ_ASSERT(ran == (e.handlerRuns ? 1u : 0u), "%s: %llu handler calls, expected %d (%s)", what,
                    static_cast<unsigned long long>(ran), e.handlerRuns ? 1 : 0, e.why);
        if (ran == 1) {
            FUZZ_ASSERT(g_lastHandler == c.selector, "%s: the handler of selector %llu ran", what,
                        static_cast<unsigned long long>(g_lastHandler));
        }
        const Spec& s = specFor(c.selector);
        if (kr != kIOReturnSuccess) {
            // Refused, or failed: no outputs, no completion kept or sent. A
            // thunk that fails after its handler succeeded (a late error) may
            // have filled scalar slots already: the kernel copies nothing
            // back on error (§3.2-5), so the app never sees them.
            const bool lateError = e.handlerRuns && c.handlerRet == kIOReturnSuccess;
            if (!lateError) {
                checkScalarsUntouched(l, 0, what);
            }
            FUZZ_ASSERT(l.args.structureOutput == nullptr, "%s: structure output returned with an error", what);
            checkOutDescriptorUntouched(l, 0, what);
            FUZZ_ASSERT(g_client->completion_count == completionsBefore, "%s: completed a failed call", what);
            FUZZ_ASSERT(g_deferred == nullptr, "%s: kept the completion of a failed call", what);
            if (l.action != nullptr) {
                FUZZ_ASSERT(l.action->getRetainCount() == 1, "%s: the completion of a failed call is retained", what);
            }
        } else if (c.selector == kHandshake) {
            checkScalarOut(l, 0, shapes::kFingerprint, "handshake");
            checkScalarOut(l, 1, shapes::kVersion, "handshake");
            checkScalarsUntouched(l, 2, "handshake");
        } else {
            checkOutputs(c, l);
            // Completions: sent at once by the handler, or kept and sent now.
            const bool async = s.completion == kAsync || (s.completion == kEither && c.completion);
            if (async && (c.completeNow || c.selector == static_cast<uint64_t>(Selector::MaybeAsync))) {
                FUZZ_ASSERT(g_deferred == nullptr, "%s: completion kept and sent", what);
                checkCompletionRecorded(c, l, completionsBefore);
            } else if (async) {
                FUZZ_ASSERT(g_deferred == l.action, "%s: the handler's completion is not the call's", what);
                FUZZ_ASSERT(l.action->getRetainCount() == 2, "%s: the kept completion has %d references", what,
                            l.action->getRetainCount());
                FUZZ_ASSERT(g_client->completion_count == completionsBefore, "%s: completed too early", what);
                completeDeferred(c);
                checkCompletionRecorded(c, l, completionsBefore);
                OSSafeReleaseNULL(g_deferred);
            } else {
                FUZZ_ASSERT(g_client->completion_count == completionsBefore, "%s: a synchronous call completed", what);
            }
        }

        // Tally.
        if (c.nullArguments || c.nullClient) {
            g_stats.nullArguments++;
        } else if (e.result == kIOReturnUnsupported) {
            g_stats.unsupported++;
        } else if (c.selector == kHandshake) {
            g_stats.handshakes++;
        } else if (s.unchecked) {
            g_stats.raw++;
        } else if (!e.handlerRuns) {
            g_stats.perSelectorRefused[c.selector]++;
            if (e.byTable) {
                g_stats.refusedTable++;
            } else {
                g_stats.refusedSchema++;
            }
        } else if (kr == kIOReturnSuccess) {
            g_stats.accepted++;
            g_stats.perSelectorAccepted[c.selector]++;
        } else if (kr == c.handlerRet) {
            g_stats.handlerErrors++;
        } else {
            g_stats.lateErrors++;
        }
    }
    g_case = nullptr;
    g_expect = nullptr;
    g_inputBytes = nullptr;
    release(l);
    g_stats.iterations++;
}

void setup()
{
    if (g_client == nullptr) {
        g_client = new TestUserClient();
    }
}

}  // namespace

#ifdef DEXTLINK_LIBFUZZER

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    g_libfuzzer = true;
    setup();
    Rng r(data, size);
    Case c;
    generate(r, c);
    g_iteration++;
    runCase(c);
    return 0;
}

#else

int main(int argc, char** argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s SEED ITERATIONS [FIRST]\n", argv[0]);
        return 2;
    }
    g_seed = strtoull(argv[1], nullptr, 0);
    const uint64_t iterations = strtoull(argv[2], nullptr, 0);
    const uint64_t first = argc > 3 ? strtoull(argv[3], nullptr, 0) : 0;
    setup();

    struct timespec t0;
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (uint64_t i = first; i < first + iterations; i++) {
        g_iteration = i;
        uint64_t state = g_seed ^ (i * 0xD1B54A32D192ED03ULL);
        Rng r(splitmix(state));
        Case c;
        generate(r, c);
        runCase(c);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    const double seconds =
        static_cast<double>(t1.tv_sec - t0.tv_sec) + static_cast<double>(t1.tv_nsec - t0.tv_nsec) / 1e9;

    // A long run must have exercised every shape both ways: a generator that
    // never reaches a handler, or never refuses, proves nothing.
    if (iterations >= 20000) {
        for (uint32_t s = 0; s < kSelectors; s++) {
            if (!kSpecs[s].present || kSpecs[s].unchecked) {
                continue;
            }
            FUZZ_ASSERT(g_stats.perSelectorAccepted[s] > 0, "coverage: %s was never accepted", kSpecs[s].name);
            FUZZ_ASSERT(g_stats.perSelectorRefused[s] > 0, "coverage: %s was never refused", kSpecs[s].name);
        }
        FUZZ_ASSERT(g_stats.handshakes > 0 && g_stats.raw > 0 && g_stats.unsupported > 0 && g_stats.anyOutcome > 0 &&
                        g_stats.lateErrors > 0 && g_stats.handlerErrors > 0 && g_stats.nullArguments > 0,
                    "coverage: an outcome was never reached");
    }

    FUZZ_ASSERT(g_client->getRetainCount() == 1, "the user client is still retained");
    g_client->release();
    g_client = nullptr;

    printf("dispatch-fuzz: seed %#llx, %llu iterations in %.3f s (%.0f/s): %llu accepted, %llu handler errors, "
           "%llu refused by the table rules, %llu refused by the schema's ranges and sizes, %llu unsupported "
           "selectors, %llu late errors, %llu handshakes, %llu unchecked, %llu either way, %llu NULL arguments; "
           "%llu handler calls, %llu completions; 0 failed\n",
           static_cast<unsigned long long>(g_seed), static_cast<unsigned long long>(g_stats.iterations), seconds,
           static_cast<double>(g_stats.iterations) / seconds, static_cast<unsigned long long>(g_stats.accepted),
           static_cast<unsigned long long>(g_stats.handlerErrors),
           static_cast<unsigned long long>(g_stats.refusedTable),
           static_cast<unsigned long long>(g_stats.refusedSchema),
           static_cast<unsigned long long>(g_stats.unsupported), static_cast<unsigned long long>(g_stats.lateErrors),
           static_cast<unsigned long long>(g_stats.handshakes), static_cast<unsigned long long>(g_stats.raw),
           static_cast<unsigned long long>(g_stats.anyOutcome),
           static_cast<unsigned long long>(g_stats.nullArguments),
           static_cast<unsigned long long>(g_stats.handlerCalls),
           static_cast<unsigned long long>(g_stats.completions));
    return 0;
}

#endif
