// Drives the NullDriver user client (examples/null_driver/dext) through every
// selector, off-device, on dextlink's DriverKit shim.
//
// Each call goes through `dextlink_shim::CallBuilder::invoke`, which builds
// IOUserClientMethodArguments the way the kernel does for an app's
// IOConnectCall…Method and applies the return rules of docs/driverkit.md
// §3.2/§3.3; the user client's ExternalMethod routes it through the generated
// NullDriver.h.  Checked: the sample's answers (scalars + 1; foo + 1 and
// bar + 10), the "Large Struct" descriptor paths, the refusals (the table's
// checks, short inputs, a too-small output descriptor), and the simulated
// device: registering a callback or making a request arms the timer five
// seconds ahead, and firing it sends {2, foo + 1, bar + 10} through the
// registered callback.
//
// Built by examples/null_driver/tests/dext_sources.rs together with
// dext/NullDriverUserClient.cpp (a separate translation unit), with
//     -DDEXTLINK_DRIVERKIT_SHIM -I schema/shim -I dext/shim -I dext
//     -I <scratch dir holding the generated NullDriver.h>
// and -fsanitize=address,undefined where available.  Prints
// "null-driver-dispatch: N passed, M failed" and exits non-zero on failure.

#include "NullDriver.h"
#include "NullDriverUserClient.h"
#include "SampleChecks.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

using dextlink_shim::CallBuilder;
using null_driver::DataStruct;
using null_driver::Selector;
using null_driver_sample::OversizedDataStruct;

// ---------------------------------------------------------------------------
// Checking
// ---------------------------------------------------------------------------

// CHECK and CHECK_EQ, and the pass/fail counts.
#include <dextlink/testing.h>

static uint64_t sel(Selector s)
{
    return static_cast<uint64_t>(s);
}

static DataStruct outStruct(const CallBuilder& call)
{
    DataStruct d;
    memcpy(&d, call.outStructBytes(), sizeof(d));
    return d;
}

static bool allBytes(const uint8_t* p, size_t n, uint8_t value)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != value) {
            return false;
        }
    }
    return true;
}

// A call built by hand, bypassing CallBuilder's wire limits: what a hostile
// or buggy caller could put in front of an unchecked handler.
static kern_return_t rawCall(IOUserClient* uc, uint64_t selector, IOUserClientMethodArguments* args)
{
    args->version = kIOUserClientMethodArgumentsCurrentVersion;
    args->selector = selector;
    return uc->ExternalMethod(selector, args, nullptr, nullptr, nullptr);
}

// ---------------------------------------------------------------------------
// Selector 0: scalar (#[unchecked], the sample's HandleExternalScalar)
// ---------------------------------------------------------------------------

static void testScalar(NullDriverUserClient* uc)
{
    {
        const uint64_t in[2] = {1, 2};
        CallBuilder call(sel(Selector::Scalar));
        call.scalarsIn(in, 2).scalarsOut(2);
        CHECK_EQ(call.invoke(uc), kIOReturnSuccess);
        CHECK_EQ(call.outScalarCount, 2);
        CHECK_EQ(call.outScalars[0], 2);
        CHECK_EQ(call.outScalars[1], 3);
    }
    {
        // More inputs than outputs: only as many as fit.
        const uint64_t in[5] = {10, 20, 30, 40, 50};
        CallBuilder call(sel(Selector::Scalar));
        call.scalarsIn(in, 5).scalarsOut(3);
        CHECK_EQ(call.invoke(uc), kIOReturnSuccess);
        CHECK_EQ(call.outScalarCount, 3);
        CHECK_EQ(call.outScalars[0], 11);
        CHECK_EQ(call.outScalars[1], 21);
        CHECK_EQ(call.outScalars[2], 31);
    }
    {
        // More outputs than inputs: the rest stay zero.
        const uint64_t in[2] = {7, 8};
        CallBuilder call(sel(Selector::Scalar));
        call.scalarsIn(in, 2).scalarsOut(4);
        CHECK_EQ(call.invoke(uc), kIOReturnSuccess);
        CHECK_EQ(call.outScalarCount, 4);
        CHECK_EQ(call.outScalars[0], 8);
        CHECK_EQ(call.outScalars[1], 9);
        CHECK_EQ(call.outScalars[2], 0);
        CHECK_EQ(call.outScalars[3], 0);
    }
    {
        // The wire maximum, 16 each way; UINT64_MAX wraps.
        uint64_t in[16];
        for (uint64_t i = 0; i < 16; i++) {
            in[i] = i * 1000;
        }
        in[15] = UINT64_MAX;
        CallBuilder call(sel(Selector::Scalar));
        call.scalarsIn(in, 16).scalarsOut(16);
        CHECK_EQ(call.invoke(uc), kIOReturnSuccess);
        CHECK_EQ(call.outScalarCount, 16);
        for (unsigned i = 0; i < 15; i++) {
            CHECK_EQ(call.outScalars[i], i * 1000 + 1);
        }
        CHECK_EQ(call.outScalars[15], 0);
    }
    {
        // Counts far beyond the 16-slot arrays: clamped, nothing overrun
        // (AddressSanitizer watches the two arrays).
        uint64_t in[kIOUserClientScalarArrayCountMax];
        uint64_t out[kIOUserClientScalarArrayCountMax] = {};
        for (uint64_t i = 0; i < kIOUserClientScalarArrayCountMax; i++) {
            in[i] = 100 + i;
        }
        IOUserClientMethodArguments args = {};
        args.scalarInput = in;
        args.scalarInputCount = 1000;
        args.scalarOutput = out;
        args.scalarOutputCount = 256;   // would wrap to 0 in the sample's uint8_t
        CHECK_EQ(rawCall(uc, sel(Selector::Scalar), &args), kIOReturnSuccess);
        for (unsigned i = 0; i < kIOUserClientScalarArrayCountMax; i++) {
            CHECK_EQ(out[i], 101 + i);
        }
    }
    {
        uint64_t values[kIOUserClientScalarArrayCountMax] = {};
        IOUserClientMethodArguments args = {};
        args.scalarInput = nullptr;
        args.scalarInputCount = 1;
        args.scalarOutput = values;
        args.scalarOutputCount = 1;
        CHECK_EQ(rawCall(uc, sel(Selector::Scalar), &args), kIOReturnBadArgument);
        args.scalarInput = values;
        args.scalarOutput = nullptr;
        CHECK_EQ(rawCall(uc, sel(Selector::Scalar), &args), kIOReturnBadArgument);
    }
}

// ---------------------------------------------------------------------------
// Selector 1: structure (#[unchecked], the sample's HandleExternalStruct)
// ---------------------------------------------------------------------------

static void testStructure(NullDriverUserClient* uc)
{
    const DataStruct in = {1, 2};
    {
        CallBuilder call(sel(Selector::Structure));
        call.structIn(&in, sizeof(in)).structOut(sizeof(DataStruct));
        CHECK_EQ(call.invoke(uc), kIOReturnSuccess);
        CHECK_EQ(call.outStructSize, sizeof(DataStruct));
        CHECK_EQ(outStruct(call).foo, 2);
        CHECK_EQ(outStruct(call).bar, 12);
        CHECK(!call.outInputModified);
    }
    {
        // A larger inline buffer: the OSData's 16 bytes come back.
        CallBuilder call(sel(Selector::Structure));
        call.structIn(&in, sizeof(in)).structOut(64);
        CHECK_EQ(call.invoke(uc), kIOReturnSuccess);
        CHECK_EQ(call.outStructSize, sizeof(DataStruct));
        CHECK_EQ(outStruct(call).bar, 12);
    }
    {
        // A buffer too small for the OSData: DriverKit refuses it (§3.3-1).
        CallBuilder call(sel(Selector::Structure));
        call.structIn(&in, sizeof(in)).structOut(8);
        CHECK_EQ(call.invoke(uc), kIOReturnBadArgument);
    }
    {
        // Shorter than DataStruct: refused (the sample would read past it).
        CallBuilder call(sel(Selector::Structure));
        call.structIn(&in, 8).structOut(sizeof(DataStruct));
        CHECK_EQ(call.invoke(uc), kIOReturnBadArgument);
    }
    {
        CallBuilder call(sel(Selector::Structure));
        call.structOut(sizeof(DataStruct));
        CHECK_EQ(call.invoke(uc), kIOReturnBadArgument);
    }

    // The sample's "Large Struct": an OversizedDataStruct each way, over 4096
    // bytes, so both travel as memory descriptors.
    static OversizedDataStruct big;
    static OversizedDataStruct answer;
    static uint8_t wide[8192];
    memset(&big, 0, sizeof(big));
    big.foo = 5;
    big.bar = 6;
    for (uint64_t i = 0; i < 511; i++) {
        big.largeArray[i] = 0x1000 + i;
    }
    {
        memset(&answer, 0xAA, sizeof(answer));
        CallBuilder call(sel(Selector::Structure));
        call.structIn(&big, sizeof(big)).structOut(sizeof(answer), &answer);
        CHECK_EQ(call.invoke(uc), kIOReturnSuccess);
        CHECK(call.args.structureInputDescriptor == nullptr);   // released by finish()
        CHECK_EQ(call.outStructSize, sizeof(OversizedDataStruct));
        CHECK_EQ(answer.foo, 6);
        CHECK_EQ(answer.bar, 16);
        CHECK(allBytes(reinterpret_cast<const uint8_t*>(answer.largeArray), sizeof(answer.largeArray), 0));
        CHECK(!call.outInputModified);
    }
    {
        // Large input, inline output.
        CallBuilder call(sel(Selector::Structure));
        call.structIn(&big, sizeof(big)).structOut(sizeof(DataStruct));
        CHECK_EQ(call.invoke(uc), kIOReturnSuccess);
        CHECK_EQ(outStruct(call).foo, 6);
        CHECK_EQ(outStruct(call).bar, 16);
    }
    {
        // An output descriptor shorter than OversizedDataStruct: refused, and
        // nothing written (the sample writes 4104 bytes regardless).
        memset(wide, 0xAA, sizeof(wide));
        CallBuilder call(sel(Selector::Structure));
        call.structIn(&big, sizeof(big)).structOut(4097, wide);
        CHECK_EQ(call.invoke(uc), kIOReturnBadArgument);
        CHECK(allBytes(wide, sizeof(wide), 0xAA));
    }
    {
        // A larger one: the OversizedDataStruct is written, the rest is not.
        memset(wide, 0xAA, sizeof(wide));
        CallBuilder call(sel(Selector::Structure));
        call.structIn(&in, sizeof(in)).structOut(sizeof(wide), wide);
        CHECK_EQ(call.invoke(uc), kIOReturnSuccess);
        CHECK_EQ(call.outStructSize, sizeof(wide));
        DataStruct head;
        memcpy(&head, wide, sizeof(head));
        CHECK_EQ(head.foo, 2);
        CHECK_EQ(head.bar, 12);
        CHECK(allBytes(wide + sizeof(DataStruct), sizeof(OversizedDataStruct) - sizeof(DataStruct), 0));
        CHECK(allBytes(wide + sizeof(OversizedDataStruct), sizeof(wide) - sizeof(OversizedDataStruct), 0xAA));
    }
}

// ---------------------------------------------------------------------------
// Selectors 2 and 3: the checked ones
// ---------------------------------------------------------------------------

static void testChecked(NullDriverUserClient* uc)
{
    uint64_t in[16];
    for (uint64_t i = 0; i < 16; i++) {
        in[i] = i * 3;
    }
    {
        CallBuilder call(sel(Selector::CheckedScalar));
        call.scalarsIn(in, 16).scalarsOut(16);
        CHECK_EQ(call.invoke(uc), kIOReturnSuccess);
        CHECK_EQ(call.outScalarCount, 16);
        for (unsigned i = 0; i < 16; i++) {
            CHECK_EQ(call.outScalars[i], i * 3 + 1);
        }
    }
    {
        // The table wants exactly 16 in, 16 out, no completion.
        CallBuilder fewer(sel(Selector::CheckedScalar));
        fewer.scalarsIn(in, 15).scalarsOut(16);
        CHECK_EQ(fewer.invoke(uc), kIOReturnBadArgument);
        CallBuilder fewerOut(sel(Selector::CheckedScalar));
        fewerOut.scalarsIn(in, 16).scalarsOut(2);
        CHECK_EQ(fewerOut.invoke(uc), kIOReturnBadArgument);
        CallBuilder async(sel(Selector::CheckedScalar));
        async.scalarsIn(in, 16).scalarsOut(16).withCompletion();
        CHECK_EQ(async.invoke(uc), kIOReturnBadArgument);
    }

    const DataStruct s = {10, 20};
    {
        CallBuilder call(sel(Selector::CheckedStruct));
        call.structIn(&s, sizeof(s)).structOut(sizeof(DataStruct));
        CHECK_EQ(call.invoke(uc), kIOReturnSuccess);
        CHECK_EQ(call.outStructSize, sizeof(DataStruct));
        CHECK_EQ(outStruct(call).foo, 11);
        CHECK_EQ(outStruct(call).bar, 30);
    }
    {
        // Exactly sizeof(DataStruct) in and out.
        CallBuilder shortIn(sel(Selector::CheckedStruct));
        shortIn.structIn(&s, 15).structOut(sizeof(DataStruct));
        CHECK_EQ(shortIn.invoke(uc), kIOReturnBadArgument);
        CallBuilder wideOut(sel(Selector::CheckedStruct));
        wideOut.structIn(&s, sizeof(s)).structOut(32);
        CHECK_EQ(wideOut.invoke(uc), kIOReturnBadArgument);
    }
}

// ---------------------------------------------------------------------------
// Selectors 4 and 5, and the simulated device
// ---------------------------------------------------------------------------

static void checkEvent(NullDriverUserClient* uc, uint32_t before, OSAction* callback, uint64_t foo, uint64_t bar)
{
    CHECK_EQ(uc->completion_count, before + 1);
    CHECK_EQ(uc->last_completion_status, kIOReturnSuccess);
    CHECK(uc->last_completion_action == callback);
    CHECK_EQ(uc->last_completion_count, 3);
    CHECK_EQ(uc->last_completion_data[0], 2);
    CHECK_EQ(uc->last_completion_data[1], foo);
    CHECK_EQ(uc->last_completion_data[2], bar);
}

static void testAsync(NullDriverUserClient* uc)
{
    IOTimerDispatchSource* timer = uc->ShimTimer();
    CHECK(timer != nullptr);
    if (timer == nullptr) {
        return;
    }
    CHECK(!timer->IsArmed());

    // A request before any callback is registered: kIOReturnError, as in the sample.
    const DataStruct early = {1, 2};
    {
        CallBuilder call(sel(Selector::AsyncRequest));
        call.structIn(&early, sizeof(early));
        CHECK_EQ(call.invoke(uc), kIOReturnError);
        CHECK(!timer->IsArmed());
    }
    // Registering needs a completion (checkCompletionExists = true).
    {
        CallBuilder call(sel(Selector::RegisterAsyncCallback));
        call.structIn(&early, sizeof(early)).structOut(sizeof(DataStruct));
        CHECK_EQ(call.invoke(uc), kIOReturnBadArgument);
        CHECK(uc->ShimRegisteredCallback() == nullptr);
    }

    // Register: answered at once with foo + 1 / bar + 10; the completion is
    // kept; the timer is armed five seconds ahead with two seconds' leeway.
    const uint64_t reference[3] = {0, 0x1111, 0x2222};
    const DataStruct in = {7, 8};
    {
        CallBuilder call(sel(Selector::RegisterAsyncCallback));
        call.structIn(&in, sizeof(in)).structOut(sizeof(DataStruct)).withCompletion(reference, 3);
        const uint64_t before = clock_gettime_nsec_np(CLOCK_MONOTONIC_RAW);
        CHECK_EQ(call.invoke(uc), kIOReturnSuccess);
        const uint64_t after = clock_gettime_nsec_np(CLOCK_MONOTONIC_RAW);
        CHECK_EQ(outStruct(call).foo, 8);
        CHECK_EQ(outStruct(call).bar, 18);
        CHECK(timer->IsArmed());
        CHECK_EQ(timer->GetClock(), kIOTimerClockMonotonicRaw);
        CHECK(timer->GetDeadline() >= before + 5000000000ULL);
        CHECK(timer->GetDeadline() <= after + 5000000000ULL);
        CHECK_EQ(timer->GetLeeway(), 2000000000ULL);
    }
    OSAction* callback = uc->ShimRegisteredCallback();
    CHECK(callback != nullptr);
    if (callback == nullptr) {
        return;
    }
    // The kernel's reference is gone after the call; the dext's remains.
    CHECK_EQ(callback->getRetainCount(), 1);
    CHECK_EQ(static_cast<const uint64_t*>(callback->GetReference())[1], 0x1111);
    CHECK_EQ(static_cast<const uint64_t*>(callback->GetReference())[2], 0x2222);

    // The device answers: {2, foo + 1, bar + 10} through the callback.
    uint32_t count = uc->completion_count;
    CHECK(timer->Fire());
    checkEvent(uc, count, callback, 8, 18);
    CHECK(!timer->IsArmed());
    CHECK(!timer->Fire());   // one event per arming
    CHECK_EQ(uc->completion_count, count + 1);

    // A request without a completion re-arms the timer; the answer goes
    // through the registered callback.
    {
        const DataStruct req = {100, 200};
        CallBuilder call(sel(Selector::AsyncRequest));
        call.structIn(&req, sizeof(req));
        CHECK_EQ(call.invoke(uc), kIOReturnSuccess);
        CHECK(timer->IsArmed());
        count = uc->completion_count;
        CHECK(timer->Fire());
        checkEvent(uc, count, callback, 101, 210);
    }
    // With a completion of its own (checkCompletionExists = -1U): accepted,
    // and ignored -- the answer still uses the registered callback, and the
    // request's completion (released when the call returns) is never touched.
    {
        const DataStruct req = {300, 400};
        CallBuilder call(sel(Selector::AsyncRequest));
        call.structIn(&req, sizeof(req)).withCompletion(reference, 3);
        CHECK_EQ(call.invoke(uc), kIOReturnSuccess);
        count = uc->completion_count;
        CHECK(timer->Fire());
        checkEvent(uc, count, callback, 301, 410);
    }
    // Two requests before the timer fires: the second replaces the first.
    {
        const DataStruct first = {1, 1};
        const DataStruct second = {5, 5};
        CallBuilder a(sel(Selector::AsyncRequest));
        a.structIn(&first, sizeof(first));
        CHECK_EQ(a.invoke(uc), kIOReturnSuccess);
        CallBuilder b(sel(Selector::AsyncRequest));
        b.structIn(&second, sizeof(second));
        CHECK_EQ(b.invoke(uc), kIOReturnSuccess);
        count = uc->completion_count;
        CHECK(timer->Fire());
        checkEvent(uc, count, callback, 6, 15);
        CHECK(!timer->Fire());
    }
    // The table's size check on requests.
    {
        CallBuilder call(sel(Selector::AsyncRequest));
        call.structIn(&in, 8);
        CHECK_EQ(call.invoke(uc), kIOReturnBadArgument);
    }

    // Registering again replaces (and releases) the earlier callback; a leak
    // or a use of the old one would show under AddressSanitizer.
    {
        const uint64_t newReference[3] = {0, 0x3333, 0x4444};
        const DataStruct zero = {0, 0};
        CallBuilder call(sel(Selector::RegisterAsyncCallback));
        call.structIn(&zero, sizeof(zero)).structOut(sizeof(DataStruct)).withCompletion(newReference, 3);
        CHECK_EQ(call.invoke(uc), kIOReturnSuccess);
    }
    callback = uc->ShimRegisteredCallback();
    CHECK(callback != nullptr);
    if (callback == nullptr) {
        return;
    }
    CHECK_EQ(callback->getRetainCount(), 1);
    CHECK_EQ(static_cast<const uint64_t*>(callback->GetReference())[2], 0x4444);
    count = uc->completion_count;
    CHECK(timer->Fire());
    checkEvent(uc, count, callback, 1, 10);
}

// ---------------------------------------------------------------------------
// Selectors outside the sample
// ---------------------------------------------------------------------------

static void testOtherSelectors(NullDriverUserClient* uc)
{
    {
        CallBuilder call(null_driver::kHandshakeSelector);
        call.scalarsOut(2);
        CHECK_EQ(call.invoke(uc), kIOReturnSuccess);
        CHECK_EQ(call.outScalars[0], null_driver::kFingerprint);
        CHECK_EQ(call.outScalars[1], null_driver::kVersion);
    }
    {
        CallBuilder call(null_driver::kSelectorCount);
        CHECK_EQ(call.invoke(uc), kIOReturnUnsupported);
    }
}

int main()
{
    IOService* provider = new IOService();
    NullDriverUserClient* uc = new NullDriverUserClient();
    CHECK(uc->init());
    CHECK_EQ(uc->Start(provider), kIOReturnSuccess);
    IOTimerDispatchSource* timer = uc->ShimTimer();
    CHECK(timer != nullptr);
    CHECK(timer != nullptr && timer->GetHandler() != nullptr);
    CHECK(timer != nullptr && strcmp(timer->GetQueue()->GetName(), kIOServiceDefaultQueueName) == 0);

    testScalar(uc);
    testStructure(uc);
    testChecked(uc);
    testAsync(uc);
    testOtherSelectors(uc);

    // Stop cancels the simulated device: an armed timer never fires, and the
    // timer's action lets go of the user client.
    {
        const DataStruct req = {9, 9};
        CallBuilder call(sel(Selector::AsyncRequest));
        call.structIn(&req, sizeof(req));
        CHECK_EQ(call.invoke(uc), kIOReturnSuccess);
    }
    CHECK(timer != nullptr && timer->IsArmed());
    CHECK_EQ(uc->getRetainCount(), 2);   // ours, and the timer action's target reference
    const uint32_t count = uc->completion_count;
    CHECK_EQ(uc->Stop(provider), kIOReturnSuccess);
    CHECK(timer != nullptr && timer->IsCancelled());
    CHECK(timer != nullptr && !timer->Fire());
    CHECK_EQ(uc->completion_count, count);
    CHECK_EQ(uc->getRetainCount(), 1);

    uc->release();   // free(): releases the timer, the actions and the queue
    provider->release();

    printf("null-driver-dispatch: %d passed, %d failed\n", g_pass, g_fail);
    return g_fail == 0 ? 0 : 1;
}
