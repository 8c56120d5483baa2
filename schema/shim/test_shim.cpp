// Self-test for dextlink/driverkit_shim.h.
//
//   g++ -std=c++17 -Wall -Wextra -Werror -Wshadow -I schema/shim
//       schema/shim/test_shim.cpp -o /tmp/test_shim && /tmp/test_shim
//
// Prints "shim: N passed, 0 failed" and exits 0 when everything passes.
// Section numbers refer to docs/driverkit.md.

#include <dextlink/driverkit_shim.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// CHECK and CHECK_EQ, and the pass/fail counts.
#include <dextlink/testing.h>

// ---------------------------------------------------------------------------
// A dext-side method and user client, shaped like Apple's NullDriver sample.
// ---------------------------------------------------------------------------

struct Behaviour {
	kern_return_t ret;
	bool          fillScalars;       // scalarOutput[i] = 100 + i for all 16 slots
	uint32_t      setScalarOutCount; // UINT32_MAX: leave
	long          structOutLen;      // >= 0: return an OSData of this length
	bool          writeOutDescriptor;
	bool          writeInput;        // write through the input's map / OSData
	bool          retainCompletion;
};

struct Seen {
	int          calls;
	OSObject    *target;
	void        *reference;
	IOUserClientMethodArguments args;
	bool         scalarOutputWasZero;
	bool         inputMapReadOnly;
	uint64_t     inputLength;
	bool         outputMapReadOnly;
	IOReturn     inputMapResult;
	IOReturn     outputMapResult;
};

static Behaviour g_b;
static Seen      g_seen;
static OSAction *g_savedCompletion = nullptr;

static void
resetBehaviour()
{
	g_b.ret = kIOReturnSuccess;
	g_b.fillScalars = false;
	g_b.setScalarOutCount = UINT32_MAX;
	g_b.structOutLen = -1;
	g_b.writeOutDescriptor = false;
	g_b.writeInput = false;
	g_b.retainCompletion = false;
	memset(&g_seen, 0, sizeof(g_seen));
}

static uint8_t
pattern(size_t i)
{
	return (uint8_t)(0x30u + (unsigned)(i % 61u));
}

static kern_return_t
sMethod(OSObject *target, void *reference, IOUserClientMethodArguments *arguments)
{
	g_seen.calls++;
	g_seen.target = target;
	g_seen.reference = reference;
	g_seen.args = *arguments;

	g_seen.scalarOutputWasZero = true;
	for (uint32_t i = 0; i < kIOUserClientScalarArrayCountMax; i++) {
		if (arguments->scalarOutput[i] != 0) {
			g_seen.scalarOutputWasZero = false;
		}
	}

	if (arguments->structureInputDescriptor != nullptr) {
		IOMemoryMap *map = nullptr;
		arguments->structureInputDescriptor->GetLength(&g_seen.inputLength);
		g_seen.inputMapResult = arguments->structureInputDescriptor->CreateMapping(0, 0, 0, 0, 0, &map);
		if (map != nullptr) {
			g_seen.inputMapReadOnly = map->IsReadOnly();
			if (g_b.writeInput) {
				reinterpret_cast<uint8_t *>(map->GetAddress())[0] ^= 0xff;
			}
			map->release();
		}
	} else if (arguments->structureInput != nullptr) {
		g_seen.inputLength = arguments->structureInput->getLength();
		if (g_b.writeInput) {
			const_cast<uint8_t *>(static_cast<const uint8_t *>(arguments->structureInput->getBytesNoCopy()))[0] ^= 0xff;
		}
	}

	if (arguments->structureOutputDescriptor != nullptr) {
		IOMemoryMap *map = nullptr;
		g_seen.outputMapResult = arguments->structureOutputDescriptor->CreateMapping(0, 0, 0, 0, 0, &map);
		if (map != nullptr) {
			g_seen.outputMapReadOnly = map->IsReadOnly();
			if (g_b.writeOutDescriptor) {
				uint8_t *p = reinterpret_cast<uint8_t *>(map->GetAddress());
				for (uint64_t i = 0; i < map->GetLength(); i++) {
					p[i] = pattern((size_t)i);
				}
			}
			map->release();
		}
	}

	if (g_b.fillScalars) {
		for (uint32_t i = 0; i < kIOUserClientScalarArrayCountMax; i++) {
			arguments->scalarOutput[i] = 100 + i;
		}
	}
	if (g_b.setScalarOutCount != UINT32_MAX) {
		arguments->scalarOutputCount = g_b.setScalarOutCount;
	}
	if (g_b.structOutLen >= 0) {
		size_t n = (size_t)g_b.structOutLen;
		OSData *d = OSData::withCapacity(0);
		for (size_t i = 0; i < n; i++) {
			uint8_t b = pattern(i);
			d->appendBytes(&b, 1);
		}
		arguments->structureOutput = d;
	}
	if (g_b.retainCompletion && arguments->completion != nullptr) {
		g_savedCompletion = arguments->completion;
		g_savedCompletion->retain();
	}
	return g_b.ret;
}

enum {
	kSelMethod = 0,
	kSelNoFunction = 1,
	kNumSelectors = 2,
};

static const uint32_t kAny = kIOUserClientVariableStructureSize;

class TestUserClient : public IOUserClient {
public:
	IOUserClientMethodDispatch table[kNumSelectors];
	IOBufferMemoryDescriptor *shared;
	uint64_t sharedOptions;

	TestUserClient() : table(), shared(nullptr), sharedOptions(0) {}

	void setEntry(uint32_t sel, IOUserClientMethodFunction fn, uint32_t completion, uint32_t scalarIn,
	    uint32_t structIn, uint32_t scalarOut, uint32_t structOut)
	{
		table[sel].function = fn;
		table[sel].checkCompletionExists = completion;
		table[sel].checkScalarInputCount = scalarIn;
		table[sel].checkStructureInputSize = structIn;
		table[sel].checkScalarOutputCount = scalarOut;
		table[sel].checkStructureOutputSize = structOut;
	}

	kern_return_t
	ExternalMethod(uint64_t selector, IOUserClientMethodArguments *arguments, const IOUserClientMethodDispatch *dispatch,
	    OSObject *target, void *reference) override
	{
		// NullDriver.cpp pattern (docs/driverkit.md §2.1-6)
		if (selector < kNumSelectors) {
			dispatch = &table[selector];
			if (!target) {
				target = this;
			}
		}
		return IOUserClient::ExternalMethod(selector, arguments, dispatch, target, reference);
	}

	kern_return_t
	CopyClientMemoryForType(uint64_t type, uint64_t *options, IOMemoryDescriptor **memory) override
	{
		if (type != 7 || shared == nullptr) {
			return kIOReturnBadArgument;
		}
		shared->retain();   // one reference consumed by the caller (§5-1)
		*options = sharedOptions;
		*memory = shared;
		return kIOReturnSuccess;
	}

protected:
	void free() override
	{
		OSSafeReleaseNULL(shared);
		IOUserClient::free();
	}
};

// ---------------------------------------------------------------------------

static void
testConstants()
{
	CHECK_EQ((uint32_t)kIOReturnSuccess, 0);
	CHECK_EQ((uint32_t)kIOReturnError, 0xE00002BCu);
	CHECK_EQ((uint32_t)kIOReturnBadArgument, 0xE00002C2u);
	CHECK_EQ((uint32_t)kIOReturnUnsupported, 0xE00002C7u);
	CHECK_EQ((uint32_t)kIOReturnNoCompletion, 0xE00002EAu);
	CHECK_EQ((uint32_t)kIOReturnOverrun, 0xE00002E8u);
	CHECK_EQ((uint32_t)kIOReturnUnderrun, 0xE00002E7u);
	CHECK_EQ((uint32_t)kIOReturnNotFound, 0xE00002F0u);
	CHECK_EQ((uint32_t)kIOReturnInvalid, 0xE0000001u);
	CHECK_EQ((uint32_t)kIOReturnCannotLock, 0xE00002CCu);
	CHECK_EQ((uint32_t)kIOReturnPortExists, 0xE00002DDu);
	CHECK_EQ((uint32_t)kUSBHostReturnPipeStalled, 0xE0005000u);
	CHECK(kIOReturnBadArgument == -536870206);
	CHECK_EQ(kIOUserClientVariableStructureSize, 0xffffffffu);
	CHECK_EQ(kIOUserClientMethodArgumentsCurrentVersion, 2);
	CHECK_EQ(IO_USER_CLIENT_METHOD_ARGUMENTS_CURRENT_VERSION, 2);
	CHECK(strcmp(kIOUserClientQueueNameExternalMethod, "IOUserClientQueueExternalMethod") == 0);
	CHECK_EQ(sizeof(IOUserClientScalarArray), 128);
	CHECK_EQ(sizeof(IOUserClientMethodArguments), 336);
	CHECK_EQ(sizeof(IOUserClientMethodDispatch), 32);
	CHECK_EQ(kIOMapReadOnly, 0x1000);
	CHECK_EQ(kIOMapGuardedLarge, 0x80000000u);
	CHECK_EQ(kIOMemoryDirectionInOut, 3);
	CHECK_EQ(kIOMemoryMapCacheModeRealTime, 0x800);
}

static void
testDispatchHappyPath(TestUserClient *uc)
{
	resetBehaviour();
	uc->setEntry(kSelMethod, sMethod, 0, 2, 8, 1, 16);
	g_b.fillScalars = true;
	g_b.structOutLen = 4;

	uint64_t in[2] = {11, 22};
	uint8_t sin[8] = {1, 2, 3, 4, 5, 6, 7, 8};
	dextlink_shim::CallBuilder call(kSelMethod);
	call.scalarsIn(in, 2).structIn(sin, sizeof(sin)).scalarsOut(1).structOut(16);
	IOReturn kr = call.invoke(uc);
	CHECK_EQ(kr, kIOReturnSuccess);
	CHECK_EQ(call.outStatus, kIOReturnSuccess);
	CHECK_EQ(g_seen.calls, 1);
	CHECK(g_seen.target == uc);
	CHECK(g_seen.reference == nullptr);
	CHECK_EQ(g_seen.args.version, 2);
	CHECK_EQ(g_seen.args.selector, kSelMethod);
	CHECK(g_seen.args.completion == nullptr);
	CHECK_EQ(g_seen.args.scalarInputCount, 2);
	CHECK_EQ(g_seen.args.scalarInput[1], 22);
	CHECK(g_seen.args.structureInput != nullptr);
	CHECK(g_seen.args.structureInputDescriptor == nullptr);
	CHECK_EQ(g_seen.inputLength, 8);
	CHECK(g_seen.scalarOutputWasZero);                      // §3.2-4
	CHECK_EQ(g_seen.args.scalarOutputCount, 1);
	CHECK_EQ(g_seen.args.structureOutputMaximumSize, 16);   // §3.2-5
	CHECK(g_seen.args.structureOutputDescriptor == nullptr);
	CHECK_EQ(call.outScalarCount, 1);
	CHECK_EQ(call.outScalars[0], 100);
	CHECK_EQ(call.outScalars[1], 0);                        // not returned
	CHECK_EQ(call.outStructSize, 4);                        // §3.3-1
	CHECK_EQ(call.outStructBytes()[0], pattern(0));
	CHECK_EQ(call.outStructBytes()[3], pattern(3));
	CHECK_EQ(call.outStructBytes()[4], 0);
	CHECK(!call.outInputModified);
	CHECK(call.completion() == nullptr);
}

// Run selector kSelMethod with the given table entry and call; return status.
static IOReturn
runWith(TestUserClient *uc, dextlink_shim::CallBuilder &call)
{
	return call.invoke(uc);
}

static void
testDispatchChecks(TestUserClient *uc)
{
	uint64_t in[4] = {1, 2, 3, 4};
	uint8_t big[5000];
	for (size_t i = 0; i < sizeof(big); i++) {
		big[i] = pattern(i);
	}

	// --- checkCompletionExists (§2.2-1) ---
	resetBehaviour();
	uc->setEntry(kSelMethod, sMethod, 1, 0, 0, 0, 0);
	{
		dextlink_shim::CallBuilder c(kSelMethod);
		CHECK_EQ(runWith(uc, c), kIOReturnBadArgument);   // required, missing
		CHECK_EQ(g_seen.calls, 0);
	}
	{
		dextlink_shim::CallBuilder c(kSelMethod);
		c.withCompletion();
		CHECK_EQ(runWith(uc, c), kIOReturnSuccess);       // required, present
		CHECK_EQ(g_seen.calls, 1);
		CHECK(g_seen.args.completion != nullptr);
	}
	resetBehaviour();
	uc->setEntry(kSelMethod, sMethod, 5, 0, 0, 0, 0);     // any non-zero means "required"
	{
		dextlink_shim::CallBuilder c(kSelMethod);
		c.withCompletion();
		CHECK_EQ(runWith(uc, c), kIOReturnSuccess);
	}
	resetBehaviour();
	uc->setEntry(kSelMethod, sMethod, 0, 0, 0, 0, 0);
	{
		dextlink_shim::CallBuilder c(kSelMethod);
		c.withCompletion();
		CHECK_EQ(runWith(uc, c), kIOReturnBadArgument);   // forbidden, present
		CHECK_EQ(g_seen.calls, 0);
	}
	uc->setEntry(kSelMethod, sMethod, kAny, 0, 0, 0, 0);
	{
		dextlink_shim::CallBuilder c(kSelMethod);
		c.withCompletion();
		CHECK_EQ(runWith(uc, c), kIOReturnSuccess);       // don't care
		dextlink_shim::CallBuilder d(kSelMethod);
		CHECK_EQ(runWith(uc, d), kIOReturnSuccess);
		CHECK_EQ(g_seen.calls, 2);
	}

	// --- checkScalarInputCount (§2.2-2) ---
	resetBehaviour();
	uc->setEntry(kSelMethod, sMethod, 0, 2, 0, 0, 0);
	{
		dextlink_shim::CallBuilder c(kSelMethod);
		c.scalarsIn(in, 3);
		CHECK_EQ(runWith(uc, c), kIOReturnBadArgument);
		dextlink_shim::CallBuilder d(kSelMethod);
		CHECK_EQ(runWith(uc, d), kIOReturnBadArgument);   // 0 != 2
		dextlink_shim::CallBuilder e(kSelMethod);
		e.scalarsIn(in, 2);
		CHECK_EQ(runWith(uc, e), kIOReturnSuccess);
		CHECK_EQ(g_seen.calls, 1);
	}

	// --- checkStructureInputSize (§2.2-3), OSData and descriptor paths ---
	resetBehaviour();
	uc->setEntry(kSelMethod, sMethod, 0, 0, 8, 0, 0);
	{
		dextlink_shim::CallBuilder c(kSelMethod);
		c.structIn(big, 7);
		CHECK_EQ(runWith(uc, c), kIOReturnBadArgument);
		dextlink_shim::CallBuilder d(kSelMethod);
		CHECK_EQ(runWith(uc, d), kIOReturnBadArgument);   // no input: length 0
		dextlink_shim::CallBuilder e(kSelMethod);
		e.structIn(big, 8);
		CHECK_EQ(runWith(uc, e), kIOReturnSuccess);
		CHECK_EQ(g_seen.calls, 1);
	}
	uc->setEntry(kSelMethod, sMethod, 0, 0, 0, 0, 0);        // 0 is an exact check (§2.2-7)
	{
		resetBehaviour();
		dextlink_shim::CallBuilder c(kSelMethod);
		CHECK_EQ(runWith(uc, c), kIOReturnSuccess);
		CHECK(g_seen.args.structureInput == nullptr);
		CHECK(g_seen.args.structureInputDescriptor == nullptr);
		dextlink_shim::CallBuilder d(kSelMethod);
		d.structIn(big, 1);
		CHECK_EQ(runWith(uc, d), kIOReturnBadArgument);
	}
	uc->setEntry(kSelMethod, sMethod, 0, 0, 4096, 0, 0);
	{
		resetBehaviour();
		dextlink_shim::CallBuilder c(kSelMethod);
		c.structIn(big, 4096);                            // 4096 is still inband (§3.1-1)
		CHECK_EQ(runWith(uc, c), kIOReturnSuccess);
		CHECK(g_seen.args.structureInput != nullptr);
		CHECK(g_seen.args.structureInputDescriptor == nullptr);
		dextlink_shim::CallBuilder d(kSelMethod);
		d.structIn(big, 5000);
		CHECK_EQ(runWith(uc, d), kIOReturnBadArgument);
	}
	uc->setEntry(kSelMethod, sMethod, 0, 0, 5000, 0, 0);
	{
		resetBehaviour();
		dextlink_shim::CallBuilder c(kSelMethod);
		c.structIn(big, 5000);                            // > 4096: descriptor (§3.2-5)
		CHECK_EQ(runWith(uc, c), kIOReturnSuccess);
		CHECK(g_seen.args.structureInput == nullptr);
		CHECK(g_seen.args.structureInputDescriptor != nullptr);
		CHECK_EQ(g_seen.inputLength, 5000);
		CHECK_EQ(g_seen.inputMapResult, kIOReturnSuccess);
		CHECK(g_seen.inputMapReadOnly);                   // §3.3-4
		CHECK(!c.outInputModified);
	}
	{
		// A dext writing into its read-only input is detected; the app's
		// bytes are untouched.
		resetBehaviour();
		g_b.writeInput = true;
		dextlink_shim::CallBuilder c(kSelMethod);
		c.structIn(big, 5000);
		CHECK_EQ(runWith(uc, c), kIOReturnSuccess);
		CHECK(c.outInputModified);
		CHECK_EQ(big[0], pattern(0));
	}
	uc->setEntry(kSelMethod, sMethod, 0, 0, 3, 0, 0);
	{
		resetBehaviour();
		g_b.writeInput = true;
		uint8_t small[3] = {9, 9, 9};
		dextlink_shim::CallBuilder c(kSelMethod);
		c.structIn(small, 3);
		CHECK_EQ(runWith(uc, c), kIOReturnSuccess);
		CHECK(c.outInputModified);
		CHECK_EQ(small[0], 9);
	}

	// --- checkScalarOutputCount (§2.2-4) ---
	resetBehaviour();
	uc->setEntry(kSelMethod, sMethod, 0, 0, 0, 1, 0);
	{
		dextlink_shim::CallBuilder c(kSelMethod);
		c.scalarsOut(2);
		CHECK_EQ(runWith(uc, c), kIOReturnBadArgument);
		CHECK_EQ(c.outScalarCount, 2);                    // unchanged on error
		dextlink_shim::CallBuilder d(kSelMethod);
		d.scalarsOut(1);
		CHECK_EQ(runWith(uc, d), kIOReturnSuccess);
		CHECK_EQ(g_seen.calls, 1);
	}

	// --- checkStructureOutputSize (§2.2-5) vs structureOutputMaximumSize ---
	resetBehaviour();
	uc->setEntry(kSelMethod, sMethod, 0, 0, 0, 0, 16);
	{
		dextlink_shim::CallBuilder c(kSelMethod);
		c.structOut(32);
		CHECK_EQ(runWith(uc, c), kIOReturnBadArgument);
		dextlink_shim::CallBuilder d(kSelMethod);
		CHECK_EQ(runWith(uc, d), kIOReturnBadArgument);   // no output: 0
		dextlink_shim::CallBuilder e(kSelMethod);
		e.structOut(16);
		CHECK_EQ(runWith(uc, e), kIOReturnSuccess);
		CHECK_EQ(g_seen.calls, 1);
	}
	uc->setEntry(kSelMethod, sMethod, 0, 0, 0, 0, 8192);
	{
		resetBehaviour();
		dextlink_shim::CallBuilder c(kSelMethod);
		c.structOut(8192);
		CHECK_EQ(runWith(uc, c), kIOReturnSuccess);
		CHECK(g_seen.args.structureOutputDescriptor != nullptr);
		CHECK_EQ(g_seen.args.structureOutputMaximumSize, 8192);
		CHECK(!g_seen.outputMapReadOnly);                 // §3.3-4
	}
	uc->setEntry(kSelMethod, sMethod, 0, 0, 0, 0, 100);
	{
		resetBehaviour();
		dextlink_shim::CallBuilder c(kSelMethod);
		c.structOutVariable();
		CHECK_EQ(runWith(uc, c), kIOReturnBadArgument);   // max size is 0xffffffff
	}
	uc->setEntry(kSelMethod, sMethod, 0, 0, 0, 0, kAny);
	{
		resetBehaviour();
		g_b.structOutLen = 3;
		dextlink_shim::CallBuilder c(kSelMethod);
		c.structOutVariable();
		CHECK_EQ(runWith(uc, c), kIOReturnSuccess);
		CHECK_EQ(g_seen.args.structureOutputMaximumSize, 0xffffffffu);
	}

	// --- everything "don't care" ---
	resetBehaviour();
	uc->setEntry(kSelMethod, sMethod, kAny, kAny, kAny, kAny, kAny);
	{
		dextlink_shim::CallBuilder c(kSelMethod);
		c.scalarsIn(in, 4).structIn(big, 5000).scalarsOut(3).structOut(9000).withCompletion();
		CHECK_EQ(runWith(uc, c), kIOReturnSuccess);
		CHECK_EQ(g_seen.calls, 1);
	}

	// --- a mismatch on several fields is still kIOReturnBadArgument ---
	resetBehaviour();
	uc->setEntry(kSelMethod, sMethod, 1, 1, 1, 1, 1);
	{
		dextlink_shim::CallBuilder c(kSelMethod);
		CHECK_EQ(runWith(uc, c), kIOReturnBadArgument);
		CHECK_EQ(g_seen.calls, 0);
	}

	// --- NULL function (§2.2-6) and the zero-filled entry (§2.2-7) ---
	resetBehaviour();
	uc->setEntry(kSelNoFunction, nullptr, 0, 0, 0, 0, 0);
	{
		dextlink_shim::CallBuilder c(kSelNoFunction);
		CHECK_EQ(runWith(uc, c), kIOReturnNoCompletion);
		dextlink_shim::CallBuilder d(kSelNoFunction);
		d.scalarsIn(in, 1);
		CHECK_EQ(runWith(uc, d), kIOReturnBadArgument);  // checks come first
	}

	// --- NULL dispatch -> kIOReturnUnsupported (§2.2-10, UNVERIFIED) ---
	{
		dextlink_shim::CallBuilder c(57);                 // out of the table: super gets NULL
		CHECK_EQ(runWith(uc, c), kIOReturnUnsupported);
		IOUserClientMethodArguments a;
		memset(&a, 0, sizeof(a));
		CHECK_EQ(uc->IOUserClient::ExternalMethod(0, &a, nullptr, uc, nullptr), kIOReturnUnsupported);
	}

	// --- the check helper directly ---
	{
		IOUserClientMethodArguments a;
		memset(&a, 0, sizeof(a));
		IOUserClientMethodDispatch d = {nullptr, 0, 0, 0, 0, 0};
		CHECK_EQ(dextlink_shim::applyDispatchChecks(&a, &d), kIOReturnSuccess);
		a.structureOutputMaximumSize = 0x1ffffffffull;
		d.checkStructureOutputSize = 0xffffffffu;
		CHECK_EQ(dextlink_shim::applyDispatchChecks(&a, &d), kIOReturnSuccess);
		d.checkStructureOutputSize = 0xfffffffeu;
		CHECK_EQ(dextlink_shim::applyDispatchChecks(&a, &d), kIOReturnBadArgument);
	}
}

static void
testReturnRules(TestUserClient *uc)
{
	uc->setEntry(kSelMethod, sMethod, kAny, kAny, kAny, kAny, kAny);

	// OSData longer than the inband capacity -> kIOReturnBadArgument (§3.3-1)
	resetBehaviour();
	g_b.fillScalars = true;
	g_b.structOutLen = 17;
	{
		dextlink_shim::CallBuilder c(kSelMethod);
		c.scalarsOut(2).structOut(16);
		CHECK_EQ(c.invoke(uc), kIOReturnBadArgument);
		CHECK_EQ(c.outScalarCount, 2);                    // §3.2-5: unchanged
		CHECK_EQ(c.outScalars[0], 0);                     // and zero
		CHECK_EQ(c.outStructSize, 16);
		CHECK_EQ(c.outStructBytes()[0], 0);               // not copied
	}
	// OSData exactly the capacity -> fine
	resetBehaviour();
	g_b.structOutLen = 16;
	{
		uint8_t appBuf[16];
		memset(appBuf, 0xee, sizeof(appBuf));
		dextlink_shim::CallBuilder c(kSelMethod);
		c.structOut(sizeof(appBuf), appBuf);
		CHECK_EQ(c.invoke(uc), kIOReturnSuccess);
		CHECK_EQ(c.outStructSize, 16);
		CHECK_EQ(appBuf[15], pattern(15));
		CHECK(c.outStructBytes() == appBuf);
	}
	// No OSData: the app gets its capacity back (§3.3-1)
	resetBehaviour();
	{
		dextlink_shim::CallBuilder c(kSelMethod);
		c.structOut(100);
		CHECK_EQ(c.invoke(uc), kIOReturnSuccess);
		CHECK_EQ(c.outStructSize, 100);
	}
	// Empty OSData: size 0
	resetBehaviour();
	g_b.structOutLen = 0;
	{
		dextlink_shim::CallBuilder c(kSelMethod);
		c.structOut(100);
		CHECK_EQ(c.invoke(uc), kIOReturnSuccess);
		CHECK_EQ(c.outStructSize, 0);
	}
	// OSData with no output buffer at all -> capacity 0 -> kIOReturnBadArgument
	resetBehaviour();
	g_b.structOutLen = 1;
	{
		dextlink_shim::CallBuilder c(kSelMethod);
		CHECK_EQ(c.invoke(uc), kIOReturnBadArgument);
	}

	// Scalar output count = min(requested, dext-set) (§3.2-5)
	resetBehaviour();
	g_b.fillScalars = true;
	g_b.setScalarOutCount = 2;
	{
		dextlink_shim::CallBuilder c(kSelMethod);
		c.scalarsOut(4);
		CHECK_EQ(c.invoke(uc), kIOReturnSuccess);
		CHECK_EQ(c.outScalarCount, 2);
		CHECK_EQ(c.outScalars[0], 100);
		CHECK_EQ(c.outScalars[1], 101);
		CHECK_EQ(c.outScalars[2], 0);
	}
	resetBehaviour();
	g_b.fillScalars = true;
	g_b.setScalarOutCount = 10;
	{
		dextlink_shim::CallBuilder c(kSelMethod);
		c.scalarsOut(4);
		CHECK_EQ(c.invoke(uc), kIOReturnSuccess);
		CHECK_EQ(c.outScalarCount, 4);                    // cannot lengthen
		CHECK_EQ(c.outScalars[3], 103);
		CHECK_EQ(c.outScalars[4], 0);
	}
	// Error from the dext: status passes through, scalars zero (§3.2-5)
	resetBehaviour();
	g_b.fillScalars = true;
	g_b.ret = kIOReturnNotReady;
	g_b.structOutLen = 4;
	{
		dextlink_shim::CallBuilder c(kSelMethod);
		c.scalarsOut(3).structOut(8);
		CHECK_EQ(c.invoke(uc), kIOReturnNotReady);
		CHECK_EQ(c.outScalarCount, 3);
		CHECK_EQ(c.outScalars[0], 0);
		CHECK_EQ(c.outStructSize, 8);
		CHECK_EQ(c.outStructBytes()[0], 0);
	}

	// Out-of-line output (§3.3-2): written through a writable descriptor,
	// app size = full capacity.
	resetBehaviour();
	g_b.writeOutDescriptor = true;
	{
		dextlink_shim::CallBuilder c(kSelMethod);
		c.structOut(9000);
		CHECK_EQ(c.invoke(uc), kIOReturnSuccess);
		CHECK_EQ(g_seen.outputMapResult, kIOReturnSuccess);
		CHECK(!g_seen.outputMapReadOnly);
		CHECK_EQ(c.outStructSize, 9000);
		CHECK_EQ(c.outStructBytes()[0], pattern(0));
		CHECK_EQ(c.outStructBytes()[8999], pattern(8999));
	}
	// ... where any non-empty OSData is an error
	resetBehaviour();
	g_b.structOutLen = 1;
	{
		dextlink_shim::CallBuilder c(kSelMethod);
		c.structOut(9000);
		CHECK_EQ(c.invoke(uc), kIOReturnBadArgument);
		CHECK_EQ(c.outStructSize, 9000);
	}
	resetBehaviour();
	g_b.structOutLen = 0;
	{
		dextlink_shim::CallBuilder c(kSelMethod);
		c.structOut(9000);
		CHECK_EQ(c.invoke(uc), kIOReturnSuccess);
	}

	// Var-output (§3.3-3)
	resetBehaviour();
	g_b.structOutLen = 10000;
	{
		dextlink_shim::CallBuilder c(kSelMethod);
		c.structOutVariable();
		CHECK_EQ(c.invoke(uc), kIOReturnSuccess);
		CHECK_EQ(c.outVarSize(), 10000);
		CHECK_EQ(c.outStructSize, 10000);
		CHECK(c.outVarBytes() != nullptr);
		CHECK_EQ(static_cast<const uint8_t *>(c.outVarBytes())[9999], pattern(9999));
	}
	resetBehaviour();
	{
		dextlink_shim::CallBuilder c(kSelMethod);
		c.structOutVariable();
		CHECK_EQ(c.invoke(uc), kIOReturnUnderrun);
		CHECK_EQ(c.outVarSize(), 0);
	}

	// Wire limits enforced before the dext (§1 limit 2)
	resetBehaviour();
	{
		uint64_t many[17] = {0};
		dextlink_shim::CallBuilder c(kSelMethod);
		c.scalarsIn(many, 17);
		CHECK_EQ(c.invoke(uc), kIOReturnOverrun);
		CHECK_EQ(g_seen.calls, 0);
		dextlink_shim::CallBuilder d(kSelMethod);
		d.scalarsOut(17);
		CHECK_EQ(d.invoke(uc), kIOReturnOverrun);
		dextlink_shim::CallBuilder e(kSelMethod);
		e.scalarsIn(many, 16).scalarsOut(16);
		CHECK_EQ(e.invoke(uc), kIOReturnSuccess);
		CHECK_EQ(g_seen.calls, 1);
	}

	// Async references (§4.2-1, §4.3-1)
	resetBehaviour();
	{
		uint64_t ref[3] = {0, 0x1111, 0x2222};
		dextlink_shim::CallBuilder c(kSelMethod);
		c.withCompletion(ref, 0);
		CHECK_EQ(c.invoke(uc), kIOReturnBadArgument);    // referenceCnt must be >= 1
		uint64_t ref9[9] = {0};
		dextlink_shim::CallBuilder d(kSelMethod);
		d.withCompletion(ref9, 9);
		CHECK_EQ(d.invoke(uc), kIOReturnBadArgument);    // > 8 slots (UNVERIFIED code)
		CHECK_EQ(g_seen.calls, 0);

		dextlink_shim::CallBuilder e(kSelMethod);
		e.withCompletion(ref, dextlink_shim::kIOAsyncCalloutCount);
		CHECK_EQ(e.build(), kIOReturnSuccess);
		OSAction *action = e.completion();
		CHECK(action != nullptr);
		CHECK(e.args.completion == action);
		const uint64_t *r = static_cast<const uint64_t *>(action->GetReference());
		CHECK_EQ(r[0], dextlink_shim::kShimWakePort | dextlink_shim::kIOUCAsync64Flag);
		CHECK_EQ(r[1], 0x1111);
		CHECK_EQ(r[2], 0x2222);
		CHECK_EQ(r[3], 0);
		CHECK_EQ(e.finish(uc->ExternalMethod(kSelMethod, &e.args, nullptr, nullptr, nullptr)), kIOReturnSuccess);
		CHECK(e.completion() == nullptr);
		CHECK(e.args.completion == nullptr);
	}
	// The completion survives the call only if the dext retains it (§4.1-2)
	resetBehaviour();
	g_b.retainCompletion = true;
	{
		dextlink_shim::CallBuilder c(kSelMethod);
		c.withCompletion();
		CHECK_EQ(c.invoke(uc), kIOReturnSuccess);
		CHECK(g_savedCompletion != nullptr);
		CHECK_EQ(g_savedCompletion->getRetainCount(), 1);
		uint64_t data[2] = {7, 8};
		uint32_t before = uc->completion_count;
		uc->AsyncCompletion(g_savedCompletion, kIOReturnSuccess, data, 2);
		CHECK_EQ(uc->completion_count, before + 1);
		CHECK(uc->last_completion_action == g_savedCompletion);
		OSSafeReleaseNULL(g_savedCompletion);
		CHECK(g_savedCompletion == nullptr);
	}

	// One-shot builder
	{
		dextlink_shim::CallBuilder c(kSelMethod);
		CHECK_EQ(c.invoke(uc), kIOReturnSuccess);
		CHECK_EQ(c.build(), kIOReturnError);
	}
	// Output capacity beyond UINT_MAX -> kIOReturnIPCError (§3.2-1)
	{
		dextlink_shim::CallBuilder c(kSelMethod);
		c.structOut((size_t)0x100000000ull, reinterpret_cast<void *>(&c));   // never touched
		CHECK_EQ(c.invoke(uc), kIOReturnIPCError);
	}
}

static void
testAsyncCompletion(TestUserClient *uc)
{
	OSAction *action = nullptr;
	CHECK_EQ(OSAction::Create(uc, 0, 0, 16, &action), kIOReturnSuccess);
	CHECK(action != nullptr);
	CHECK(action->GetReference() != nullptr);
	CHECK_EQ(action->GetReferenceSize(), 16);
	action->reference = 42;

	IOUserClientAsyncArgumentsArray data;
	for (uint32_t i = 0; i < kIOUserClientAsyncArgumentsCountMax; i++) {
		data[i] = 1000 + i;
	}
	uint32_t count0 = uc->completion_count;

	uc->AsyncCompletion(action, kIOReturnAborted, data, 17);   // > 16: dropped (§4.1-3)
	CHECK_EQ(uc->completion_count, count0);
	CHECK_EQ(uc->dropped_completion_count, 1);

	uc->AsyncCompletion(action, kIOReturnTimeout, data, 16);
	CHECK_EQ(uc->completion_count, count0 + 1);
	CHECK_EQ(uc->last_completion_status, kIOReturnTimeout);
	CHECK_EQ(uc->last_completion_count, 16);
	CHECK_EQ(uc->last_completion_data[15], 1015);
	CHECK(uc->last_completion_action == action);
	CHECK_EQ(uc->last_completion_action->reference, 42);

	uc->AsyncCompletion(action, kIOReturnSuccess, data, 2);
	CHECK_EQ(uc->completion_count, count0 + 2);
	CHECK_EQ(uc->last_completion_status, kIOReturnSuccess);
	CHECK_EQ(uc->last_completion_count, 2);
	CHECK_EQ(uc->last_completion_data[1], 1001);
	CHECK_EQ(uc->last_completion_data[2], 0);

	uc->AsyncCompletion(action, kIOReturnSuccess, data, 0);
	CHECK_EQ(uc->last_completion_count, 0);
	CHECK_EQ(uc->last_completion_data[0], 0);

	uc->AsyncCompletion(nullptr, kIOReturnSuccess, data, 1);  // crashes in DriverKit
	CHECK_EQ(uc->null_action_completion_count, 1);
	CHECK_EQ(uc->completion_count, count0 + 3);

	// OSAction retains its target.
	int targetRefs = uc->getRetainCount();
	action->release();
	CHECK_EQ(uc->getRetainCount(), targetRefs - 1);
}

static void
testCreateMapping()
{
	uint8_t buf[100];
	memset(buf, 0, sizeof(buf));
	IOMemoryMap *map = nullptr;

	IOMemoryDescriptor *out = IOMemoryDescriptor::withAddressRange(buf, sizeof(buf), kIOMemoryDirectionOut);
	IOMemoryDescriptor *in = IOMemoryDescriptor::withAddressRange(buf, sizeof(buf), kIOMemoryDirectionIn);
	IOMemoryDescriptor *both = IOMemoryDescriptor::withAddressRange(buf, sizeof(buf), kIOMemoryDirectionInOut);
	CHECK(out != nullptr && in != nullptr && both != nullptr);
	CHECK_EQ(out->GetDirection(), kIOMemoryDirectionOut);
	uint64_t len = 0;
	CHECK_EQ(out->GetLength(&len), kIOReturnSuccess);
	CHECK_EQ(len, 100);

	// Read-only forcing (§3.3-4)
	CHECK_EQ(out->CreateMapping(0, 0, 0, 0, 0, &map), kIOReturnSuccess);
	CHECK(map->IsReadOnly());
	CHECK_EQ(map->GetAddress(), (uint64_t)(uintptr_t)buf);
	CHECK_EQ(map->GetLength(), 100);
	CHECK_EQ(map->GetOffset(), 0);
	OSSafeReleaseNULL(map);
	CHECK_EQ(in->CreateMapping(0, 0, 0, 0, 0, &map), kIOReturnSuccess);
	CHECK(!map->IsReadOnly());
	OSSafeReleaseNULL(map);
	CHECK_EQ(both->CreateMapping(0, 0, 0, 0, 0, &map), kIOReturnSuccess);
	CHECK(!map->IsReadOnly());                            // only exactly "Out" forces
	OSSafeReleaseNULL(map);
	CHECK_EQ(in->CreateMapping(kIOMemoryMapReadOnly, 0, 0, 0, 0, &map), kIOReturnSuccess);
	CHECK(map->IsReadOnly());
	OSSafeReleaseNULL(map);

	// Cache modes (§5-6)
	const uint64_t good[] = {kIOMemoryMapCacheModeDefault, kIOMemoryMapCacheModeInhibit,
		                     kIOMemoryMapCacheModeCopyback, kIOMemoryMapCacheModeWriteThrough,
		                     kIOMemoryMapCacheModeRealTime};
	for (uint64_t mode : good) {
		CHECK_EQ(in->CreateMapping(mode, 0, 0, 0, 0, &map), kIOReturnSuccess);
		OSSafeReleaseNULL(map);
	}
	CHECK_EQ(in->CreateMapping(0x300, 0, 0, 0, 0, &map), kIOReturnBadArgument);
	CHECK(map == nullptr);
	CHECK_EQ(in->CreateMapping(0x1000, 0, 0, 0, 0, &map), kIOReturnBadArgument);
	CHECK_EQ(in->CreateMapping(kIOMemoryMapGuardedLarge, 0, 0, 0, 0, &map), kIOReturnSuccess);
	OSSafeReleaseNULL(map);

	// Alignment must be 0
	CHECK_EQ(in->CreateMapping(0, 0, 0, 0, 16, &map), kIOReturnBadArgument);

	// Offsets and lengths
	CHECK_EQ(in->CreateMapping(0, 0, 10, 20, 0, &map), kIOReturnSuccess);
	CHECK_EQ(map->GetAddress(), (uint64_t)(uintptr_t)(buf + 10));
	CHECK_EQ(map->GetOffset(), 10);
	CHECK_EQ(map->GetLength(), 20);
	OSSafeReleaseNULL(map);
	CHECK_EQ(in->CreateMapping(0, 0, 80, 20, 0, &map), kIOReturnSuccess);
	OSSafeReleaseNULL(map);
	CHECK_EQ(in->CreateMapping(0, 0, 10, 0, 0, &map), kIOReturnError);    // 0 = whole length
	CHECK_EQ(in->CreateMapping(0, 0, 90, 20, 0, &map), kIOReturnError);
	CHECK_EQ(in->CreateMapping(0, 0, 100, 1, 0, &map), kIOReturnError);
	CHECK_EQ(in->CreateMapping(0, 0, 0, 101, 0, &map), kIOReturnError);
	CHECK(map == nullptr);

	// Fixed address
	CHECK_EQ(in->CreateMapping(kIOMemoryMapFixedAddress, (uint64_t)(uintptr_t)(buf + 4), 4, 8, 0, &map),
	    kIOReturnSuccess);
	OSSafeReleaseNULL(map);
	CHECK_EQ(in->CreateMapping(kIOMemoryMapFixedAddress, 0x1000, 0, 0, 0, &map), kIOReturnError);

	// A map keeps its descriptor alive
	CHECK_EQ(in->getRetainCount(), 1);
	CHECK_EQ(in->CreateMapping(0, 0, 0, 0, 0, &map), kIOReturnSuccess);
	CHECK_EQ(in->getRetainCount(), 2);
	in->release();
	CHECK_EQ(map->GetLength(), 100);
	OSSafeReleaseNULL(map);                               // frees the descriptor too

	// Bad withAddressRange arguments
	CHECK(IOMemoryDescriptor::withAddressRange(buf, 10, 0x4) == nullptr);
	CHECK(IOMemoryDescriptor::withAddressRange(nullptr, 10, kIOMemoryDirectionIn) == nullptr);
	IOMemoryDescriptor *cow = IOMemoryDescriptor::withAddressRange(buf, 10,
	    kIOMemoryDirectionOut | kIOMemoryDisableCopyOnWrite);
	CHECK(cow != nullptr);
	CHECK_EQ(cow->GetDirection(), kIOMemoryDirectionOut);
	CHECK_EQ(cow->CreateMapping(0, 0, 0, 0, 0, &map), kIOReturnSuccess);
	CHECK(map->IsReadOnly());
	OSSafeReleaseNULL(map);
	OSSafeReleaseNULL(cow);

	OSSafeReleaseNULL(out);
	OSSafeReleaseNULL(both);
}

static void
testBufferMemoryDescriptor()
{
	IOBufferMemoryDescriptor *bmd = reinterpret_cast<IOBufferMemoryDescriptor *>(&bmd);   // must be cleared
	CHECK_EQ(IOBufferMemoryDescriptor::Create(0x4, 100, 0, &bmd), kIOReturnBadArgument);
	CHECK(bmd == nullptr);
	CHECK_EQ(IOBufferMemoryDescriptor::Create(kIOMemoryDisableCopyOnWrite, 100, 0, &bmd), kIOReturnBadArgument);
	CHECK_EQ(IOBufferMemoryDescriptor::Create(kIOMemoryDirectionInOut, 0, 0, &bmd), kIOReturnNoMemory);
	CHECK_EQ(IOBufferMemoryDescriptor::Create(kIOMemoryDirectionInOut, 1ull << 40, 0, &bmd), kIOReturnNoMemory);
	CHECK(bmd == nullptr);

	CHECK_EQ(IOBufferMemoryDescriptor::Create(kIOMemoryDirectionInOut, 10000, 0, &bmd), kIOReturnSuccess);
	CHECK(bmd != nullptr);
	uint64_t len = 0;
	bmd->GetLength(&len);
	CHECK_EQ(len, 10000);                                 // initial length = capacity (§5-7)
	CHECK_EQ(bmd->GetCapacity(), 10000);
	IOAddressSegment range = {0, 0};
	CHECK_EQ(bmd->GetAddressRange(&range), kIOReturnSuccess);
	CHECK(range.address != 0);
	CHECK_EQ(range.address % 4096, 0);
	CHECK_EQ(range.length, 10000);
	bool zero = true;
	const uint8_t *p = reinterpret_cast<const uint8_t *>(range.address);
	for (size_t i = 0; i < 10000; i++) {
		if (p[i] != 0) {
			zero = false;
		}
	}
	CHECK(zero);

	CHECK_EQ(bmd->SetLength(100), kIOReturnSuccess);
	bmd->GetLength(&len);
	CHECK_EQ(len, 100);
	CHECK_EQ(bmd->SetLength(20000), kIOReturnSuccess);   // ignored (§5-7)
	bmd->GetLength(&len);
	CHECK_EQ(len, 100);
	CHECK_EQ(bmd->SetLength(10000), kIOReturnSuccess);
	bmd->GetLength(&len);
	CHECK_EQ(len, 10000);

	// The dext created it: maps are writable even if read-only is asked (§3.3-4)
	IOMemoryMap *map = nullptr;
	CHECK_EQ(bmd->CreateMapping(kIOMemoryMapReadOnly, 0, 0, 0, 0, &map), kIOReturnSuccess);
	CHECK(!map->IsReadOnly());
	CHECK_EQ(map->GetAddress(), range.address);
	OSSafeReleaseNULL(map);
	OSSafeReleaseNULL(bmd);

	CHECK_EQ(IOBufferMemoryDescriptor::Create(kIOMemoryDirectionOut, 64, 0, &bmd), kIOReturnSuccess);
	CHECK_EQ(bmd->CreateMapping(0, 0, 0, 0, 0, &map), kIOReturnSuccess);
	CHECK(!map->IsReadOnly());
	OSSafeReleaseNULL(map);
	OSSafeReleaseNULL(bmd);

	CHECK_EQ(IOBufferMemoryDescriptor::Create(kIOMemoryDirectionNone, 64, 16384, &bmd), kIOReturnSuccess);
	CHECK_EQ(bmd->GetAddressRange(&range), kIOReturnSuccess);
	CHECK_EQ(range.address % 16384, 0);
	OSSafeReleaseNULL(bmd);
}

static int g_freed = 0;

class Tracked : public OSObject {
protected:
	void free() override
	{
		g_freed++;
		OSObject::free();
	}
};

class Derived : public Tracked {
};

static void
testRefcountAndOSData()
{
	g_freed = 0;
	Tracked *t = new Tracked();
	CHECK(t->init());
	CHECK_EQ(t->getRetainCount(), 1);
	t->retain();
	CHECK_EQ(t->getRetainCount(), 2);
	t->release();
	CHECK_EQ(t->getRetainCount(), 1);
	CHECK_EQ(g_freed, 0);
	OSSafeReleaseNULL(t);
	CHECK(t == nullptr);
	CHECK_EQ(g_freed, 1);
	OSSafeReleaseNULL(t);                                 // NULL is fine
	CHECK_EQ(g_freed, 1);

	OSObject *o = new Derived();
	CHECK(OSDynamicCast(Tracked, o) != nullptr);
	CHECK(OSDynamicCast(OSData, o) == nullptr);
	CHECK(OSDynamicCast(OSData, nullptr) == nullptr);
	OSObject *none = nullptr;
	CHECK(OSDynamicCast(Tracked, none) == nullptr);
	o->release();
	CHECK_EQ(g_freed, 2);

	// OSData
	const char hello[] = "hello";
	OSData *d = OSData::withBytes(hello, 5);
	CHECK(d != nullptr);
	CHECK_EQ(d->getLength(), 5);
	CHECK(memcmp(d->getBytesNoCopy(), "hello", 5) == 0);
	CHECK(d->getBytesNoCopy() != static_cast<const void *>(hello));   // copied
	CHECK(memcmp(d->getBytesNoCopy(1, 3), "ell", 3) == 0);
	CHECK(d->getBytesNoCopy(3, 3) == nullptr);
	CHECK(d->getBytesNoCopy(5, 0) == nullptr);
	CHECK(d->isEqualTo("hello", 5));
	CHECK(!d->isEqualTo("hell", 4));
	CHECK(d->appendBytes(" world", 6));
	CHECK(d->isEqualTo("hello world", 11));
	CHECK(d->appendBytes(nullptr, 2));                   // zeros
	CHECK_EQ(d->getLength(), 13);
	CHECK_EQ(static_cast<const uint8_t *>(d->getBytesNoCopy())[12], 0);
	OSData *copy = OSData::withData(d);
	CHECK(copy != nullptr && copy->isEqualTo(d));
	OSSafeReleaseNULL(copy);
	OSSafeReleaseNULL(d);

	char ext[4] = {'a', 'b', 'c', 'd'};
	OSData *nc = OSData::withBytesNoCopy(ext, 4);
	CHECK(nc->getBytesNoCopy() == static_cast<const void *>(ext));
	CHECK(!nc->appendBytes("x", 1));                     // no-copy data cannot grow
	OSSafeReleaseNULL(nc);
	CHECK_EQ(ext[0], 'a');

	OSData *e = OSData::withCapacity(0);
	CHECK(e != nullptr);
	CHECK_EQ(e->getLength(), 0);
	CHECK(e->getBytesNoCopy() == nullptr);
	CHECK(e->isEqualTo(nullptr, 0));
	bool appended = true;
	for (int i = 0; i < 1000; i++) {
		uint8_t b = (uint8_t)i;
		appended = e->appendBytes(&b, 1) && appended;
	}
	CHECK(appended);
	CHECK_EQ(e->getLength(), 1000);
	CHECK_EQ(static_cast<const uint8_t *>(e->getBytesNoCopy())[999], (uint8_t)999);
	OSSafeReleaseNULL(e);
	CHECK(OSData::withBytes(nullptr, 3) == nullptr);

	// IONew / IOSafeDeleteNULL
	uint32_t *arr = IONewZero(uint32_t, 8);
	CHECK(arr != nullptr);
	CHECK_EQ(arr[7], 0);
	IOSafeDeleteNULL(arr, uint32_t, 8);
	CHECK(arr == nullptr);
	uint64_t *arr2 = IONew(uint64_t, 4);
	CHECK(arr2 != nullptr);
	IODelete(arr2, uint64_t, 4);
	CHECK(IONew(uint8_t, 0) == nullptr);
	void *m = IOMallocZero(32);
	CHECK(m != nullptr);
	IOFree(m, 32);

	// Logging: silent unless DEXTLINK_SHIM_LOG is set.
	IOLog("shim test IOLog %d\n", 1);
	os_log(OS_LOG_DEFAULT, "shim test os_log %{public}s %llu %%", "str", 5ull);
}

static void
testCopyClientMemory(TestUserClient *uc)
{
	IOMemoryDescriptor *md = nullptr;
	uint32_t mapOptions = 123;
	CHECK_EQ(dextlink_shim::copyClientMemory(uc, 7, &md, &mapOptions), kIOReturnBadArgument);  // no memory yet
	CHECK_EQ(mapOptions, 0);

	IOBufferMemoryDescriptor *bmd = nullptr;
	CHECK_EQ(IOBufferMemoryDescriptor::Create(kIOMemoryDirectionInOut, 4096, 0, &bmd), kIOReturnSuccess);
	uc->shared = bmd;
	uc->sharedOptions = kIOUserClientMemoryReadOnly;
	CHECK_EQ(dextlink_shim::copyClientMemory(uc, 7, &md, &mapOptions), kIOReturnSuccess);
	CHECK(md == bmd);
	CHECK_EQ(mapOptions, kIOMapReadOnly);
	CHECK_EQ(bmd->getRetainCount(), 2);
	OSSafeReleaseNULL(md);
	uc->sharedOptions = 0;
	CHECK_EQ(dextlink_shim::copyClientMemory(uc, 7, &md, &mapOptions), kIOReturnSuccess);
	CHECK_EQ(mapOptions, 0);
	OSSafeReleaseNULL(md);

	IOUserClient *plain = new IOUserClient();
	uint64_t opts = 0;
	CHECK_EQ(plain->CopyClientMemoryForType(0, &opts, &md), kIOReturnUnsupported);
	CHECK_EQ(dextlink_shim::copyClientMemory(plain, 0, &md, &mapOptions), kIOReturnUnsupported);
	CHECK(md == nullptr);
	plain->release();
}

// ---------------------------------------------------------------------------
// [runtime] queues, timers, action cancel/invoke, Start/Stop, clocks
// ---------------------------------------------------------------------------

static int      g_cancelHandlerCalls = 0;
static int      g_timerCalls = 0;
static uint64_t g_timerTime = 0;
static OSObject *g_timerTarget = nullptr;

static void
countCancel()
{
	g_cancelHandlerCalls++;
}

static void
onTimer(OSObject *target, OSAction *action, const uint64_t *args, uint32_t count)
{
	(void)action;
	g_timerCalls++;
	g_timerTarget = target;
	g_timerTime = count >= 1 ? args[0] : 0;
}

class LifecycleService : public IOService {
public:
	int startCalls = 0;
	int stopCalls = 0;
	kern_return_t superStart = kIOReturnError;
	kern_return_t superStop = kIOReturnError;

protected:
	kern_return_t
	Start_Impl(IOService *provider) override
	{
		startCalls++;
		superStart = Start(provider, SUPERDISPATCH);   // IOService's own, not this again
		return kIOReturnSuccess;
	}
	kern_return_t
	Stop_Impl(IOService *provider) override
	{
		stopCalls++;
		superStop = Stop(provider, SUPERDISPATCH);
		return kIOReturnSuccess;
	}
};

static void
testRuntime()
{
	// clock_gettime_nsec_np: non-zero, monotonic.
	uint64_t t0 = clock_gettime_nsec_np(CLOCK_MONOTONIC_RAW);
	uint64_t t1 = clock_gettime_nsec_np(CLOCK_MONOTONIC_RAW);
	CHECK(t0 != 0);
	CHECK(t1 >= t0);
	CHECK_EQ(kIOTimerClockMonotonicRaw, 0x84);

	// Start/Stop route to the most derived _Impl; SUPERDISPATCH to IOService's.
	LifecycleService *svc = new LifecycleService();
	CHECK_EQ(svc->Start(nullptr), kIOReturnSuccess);
	CHECK_EQ(svc->startCalls, 1);
	CHECK_EQ(svc->superStart, kIOReturnSuccess);
	CHECK_EQ(svc->Stop(nullptr), kIOReturnSuccess);
	CHECK_EQ(svc->stopCalls, 1);
	CHECK_EQ(svc->superStop, kIOReturnSuccess);

	// CopyDispatchQueue: the default queue, retained, the same each time.
	IODispatchQueue *q1 = nullptr;
	IODispatchQueue *q2 = nullptr;
	CHECK_EQ(svc->CopyDispatchQueue(kIOServiceDefaultQueueName, &q1), kIOReturnSuccess);
	CHECK_EQ(svc->CopyDispatchQueue(kIOServiceDefaultQueueName, &q2), kIOReturnSuccess);
	CHECK(q1 != nullptr && q1 == q2);
	CHECK(q1 != nullptr && strcmp(q1->GetName(), "Default") == 0);
	CHECK_EQ(q1->getRetainCount(), 3);
	IODispatchQueue *none = q1;
	CHECK_EQ(svc->CopyDispatchQueue("Other", &none), kIOReturnNotFound);
	CHECK(none == nullptr);
	OSSafeReleaseNULL(q2);

	// IODispatchQueue::Create / Cancel.
	IODispatchQueue *q = nullptr;
	CHECK_EQ(IODispatchQueue::Create("NullDriverQueue", 0, 0, &q), kIOReturnSuccess);
	CHECK(q != nullptr && strcmp(q->GetName(), "NullDriverQueue") == 0);
	CHECK(!q->IsCancelled());

	// Timer: Create retains the queue.
	IOTimerDispatchSource *timer = nullptr;
	CHECK_EQ(IOTimerDispatchSource::Create(nullptr, &timer), kIOReturnBadArgument);
	CHECK(timer == nullptr);
	CHECK_EQ(IOTimerDispatchSource::Create(q, &timer), kIOReturnSuccess);
	CHECK_EQ(q->getRetainCount(), 2);
	CHECK(!timer->IsArmed());
	CHECK(!timer->Fire());   // not armed, no handler

	// An action aimed at svc, with a handler (what iig's CreateAction<Method> wires).
	OSAction *action = nullptr;
	CHECK_EQ(OSAction::Create(svc, 1, 2, 16, &action), kIOReturnSuccess);
	action->ShimSetHandler(onTimer);
	CHECK_EQ(svc->getRetainCount(), 2);   // the action holds its target
	CHECK_EQ(timer->SetHandler(action), kIOReturnSuccess);
	CHECK_EQ(action->getRetainCount(), 2);
	CHECK(timer->GetHandler() == action);

	CHECK_EQ(timer->WakeAtTime(0x1234, 10, 1), kIOReturnBadArgument);
	CHECK(!timer->IsArmed());
	CHECK_EQ(timer->WakeAtTime(kIOTimerClockMonotonicRaw, 100, 7), kIOReturnSuccess);
	CHECK_EQ(timer->WakeAtTime(kIOTimerClockMonotonicRaw, 200, 9), kIOReturnSuccess);   // replaces
	CHECK(timer->IsArmed());
	CHECK_EQ(timer->GetClock(), kIOTimerClockMonotonicRaw);
	CHECK_EQ(timer->GetDeadline(), 200);
	CHECK_EQ(timer->GetLeeway(), 9);
	CHECK_EQ(timer->GetWakeCount(), 2);
	CHECK(timer->Fire());
	CHECK_EQ(g_timerCalls, 1);   // once: the first deadline was replaced
	CHECK_EQ(g_timerTime, 200);
	CHECK(g_timerTarget == svc);
	CHECK(!timer->IsArmed());
	CHECK(!timer->Fire());       // one shot
	CHECK_EQ(g_timerCalls, 1);

	// A cancelled action delivers nothing and lets go of its target.
	CHECK_EQ(timer->WakeAtTime(kIOTimerClockUptimeRaw, 300, 0), kIOReturnSuccess);
	CHECK_EQ(action->Cancel(countCancel), kIOReturnSuccess);
	CHECK(action->IsCancelled());
	CHECK_EQ(g_cancelHandlerCalls, 1);
	CHECK_EQ(svc->getRetainCount(), 1);
	CHECK(!timer->Fire());
	CHECK_EQ(g_timerCalls, 1);
	CHECK_EQ(action->Cancel(nullptr), kIOReturnSuccess);   // again: harmless

	// Timer Cancel: disarms, releases the handler, refuses new deadlines.
	CHECK_EQ(timer->WakeAtTime(kIOTimerClockUptimeRaw, 400, 0), kIOReturnSuccess);
	CHECK_EQ(timer->Cancel(countCancel), kIOReturnSuccess);
	CHECK_EQ(g_cancelHandlerCalls, 2);
	CHECK(timer->IsCancelled());
	CHECK(!timer->IsArmed());
	CHECK(timer->GetHandler() == nullptr);
	CHECK_EQ(action->getRetainCount(), 1);
	CHECK_EQ(timer->WakeAtTime(kIOTimerClockUptimeRaw, 500, 0), kIOReturnNotReady);
	CHECK_EQ(timer->SetHandler(action), kIOReturnNotReady);
	CHECK_EQ(q->Cancel(countCancel), kIOReturnSuccess);
	CHECK(q->IsCancelled());
	CHECK_EQ(g_cancelHandlerCalls, 3);

	OSSafeReleaseNULL(action);
	OSSafeReleaseNULL(timer);
	CHECK_EQ(q->getRetainCount(), 1);
	OSSafeReleaseNULL(q);
	OSSafeReleaseNULL(q1);
	CHECK_EQ(svc->getRetainCount(), 1);
	svc->release();   // frees the default queue too (ASan/valgrind would see a leak)
}

int
main()
{
	TestUserClient *uc = new TestUserClient();
	testConstants();
	testDispatchHappyPath(uc);
	testDispatchChecks(uc);
	testReturnRules(uc);
	testAsyncCompletion(uc);
	testCreateMapping();
	testBufferMemoryDescriptor();
	testRefcountAndOSData();
	testCopyClientMemory(uc);
	testRuntime();
	CHECK_EQ(uc->getRetainCount(), 1);
	uc->release();

	printf("shim: %d passed, %d failed\n", g_pass, g_fail);
	return g_fail == 0 ? 0 : 1;
}
