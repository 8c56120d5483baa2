// SampleChecks.h: the dispatch checks Apple's NullDriver sample writes by
// hand, and a compile-time proof that the table dextlink generates from
// null_driver.dextlink (`null_driver::kDispatchTable` in NullDriverInterface.h)
// applies exactly the same checks.
//
// The requirement: the generated table entries for the checked selectors must
// equal the sample's hand-written externalMethodChecks field for field.  Every
// translation unit that includes this header re-proves it; a drifted entry is
// a compile error that names the selector.
//
// The table below is the sample's `externalMethodChecks`, written the same
// way, with two changes C++17 needs:
//   - constexpr instead of const, so static_assert can read it;
//   - positional initializers with the field names in comments: the sample's
//     designated initializers (`[ExternalMethodType_CheckedScalar] =`,
//     `.function =`) are C99 / C++20, which -std=c++17 -Wpedantic rejects.
// Its `function` fields point at dextlink's generated thunks, which take the
// place of the sample's StaticHandleExternalChecked… functions.

#ifndef NullDriver_SampleChecks_h
#define NullDriver_SampleChecks_h

#include "NullDriverInterface.h"

namespace null_driver_sample {

// The sample's selectors ("should ideally be shared across all applications
// using the driver").
typedef enum
{
    ExternalMethodType_Scalar = 0,
    ExternalMethodType_Struct = 1,
    ExternalMethodType_CheckedScalar = 2,
    ExternalMethodType_CheckedStruct = 3,
    ExternalMethodType_RegisterAsyncCallback = 4,
    ExternalMethodType_AsyncRequest = 5,
    NumberOfExternalMethods // Has to be last
} ExternalMethodType;

// The sample's structures.
typedef struct
{
    uint64_t foo;
    uint64_t bar;
} DataStruct;

typedef struct
{
    uint64_t foo;
    uint64_t bar;
    uint64_t largeArray[511];
} OversizedDataStruct;

constexpr IOUserClientMethodDispatch externalMethodChecks[NumberOfExternalMethods] = {
    // ExternalMethodType_Scalar and ExternalMethodType_Struct are left out on
    // purpose (zero-filled): ExternalMethod dispatches them by hand, without
    // checks.  The checked selectors are the safer way.
    {}, // [ExternalMethodType_Scalar]
    {}, // [ExternalMethodType_Struct]
    // [ExternalMethodType_CheckedScalar]
    {
        null_driver::StaticHandleCheckedScalar, // .function
        false,                                  // .checkCompletionExists: synchronous, completion must be 0
        16,                                     // .checkScalarInputCount
        0,                                      // .checkStructureInputSize
        16,                                     // .checkScalarOutputCount
        0,                                      // .checkStructureOutputSize
    },
    // [ExternalMethodType_CheckedStruct]
    {
        null_driver::StaticHandleCheckedStruct, // .function
        false,                                  // .checkCompletionExists
        0,                                      // .checkScalarInputCount: no scalar inputs
        sizeof(DataStruct),                     // .checkStructureInputSize: an exact size, not a variable one
        0,                                      // .checkScalarOutputCount
        sizeof(DataStruct),                     // .checkStructureOutputSize
    },
    // [ExternalMethodType_RegisterAsyncCallback]
    {
        null_driver::StaticHandleRegisterAsyncCallback, // .function
        true,                                           // .checkCompletionExists: the callback to keep
        0,                                              // .checkScalarInputCount
        sizeof(DataStruct),                             // .checkStructureInputSize
        0,                                              // .checkScalarOutputCount
        sizeof(DataStruct),                             // .checkStructureOutputSize
    },
    // [ExternalMethodType_AsyncRequest]
    {
        null_driver::StaticHandleAsyncRequest, // .function
        -1U,                                   // .checkCompletionExists: don't care
        0,                                     // .checkScalarInputCount
        sizeof(DataStruct),                    // .checkStructureInputSize
        0,                                     // .checkScalarOutputCount
        0,                                     // .checkStructureOutputSize
    },
};

// ---------------------------------------------------------------------------
// The comparison
// ---------------------------------------------------------------------------

/// The five fields DriverKit checks before calling `function`
/// (docs/driverkit.md §2.2), compared one by one.
constexpr bool SameChecks(const IOUserClientMethodDispatch& generated, const IOUserClientMethodDispatch& sample)
{
    return generated.checkCompletionExists == sample.checkCompletionExists &&
           generated.checkScalarInputCount == sample.checkScalarInputCount &&
           generated.checkStructureInputSize == sample.checkStructureInputSize &&
           generated.checkScalarOutputCount == sample.checkScalarOutputCount &&
           generated.checkStructureOutputSize == sample.checkStructureOutputSize;
}

/// The generated entry for `selector` applies the sample's checks and calls
/// the same function as the sample's entry.
constexpr bool GeneratedEntryMatchesSample(uint32_t selector)
{
    return selector < null_driver::kSelectorCount && selector < NumberOfExternalMethods &&
           SameChecks(null_driver::kDispatchTable[selector], externalMethodChecks[selector]) &&
           null_driver::kDispatchTable[selector].function == externalMethodChecks[selector].function;
}

/// An unchecked (`#[unchecked]`, dispatched by hand) entry: no function, every
/// check zero -- the zero-filled entry the sample leaves for selectors 0 and 1.
constexpr bool IsUncheckedEntry(const IOUserClientMethodDispatch& entry)
{
    return entry.function == nullptr && entry.checkCompletionExists == 0 && entry.checkScalarInputCount == 0 &&
           entry.checkStructureInputSize == 0 && entry.checkScalarOutputCount == 0 &&
           entry.checkStructureOutputSize == 0;
}

// The same selectors, numbered the same way.
static_assert(static_cast<uint32_t>(NumberOfExternalMethods) == null_driver::kSelectorCount,
              "NullDriver sample check: the schema and the sample have different numbers of selectors");
static_assert(ExternalMethodType_Scalar == static_cast<uint32_t>(null_driver::Selector::Scalar) &&
                  ExternalMethodType_Struct == static_cast<uint32_t>(null_driver::Selector::Structure) &&
                  ExternalMethodType_CheckedScalar == static_cast<uint32_t>(null_driver::Selector::CheckedScalar) &&
                  ExternalMethodType_CheckedStruct == static_cast<uint32_t>(null_driver::Selector::CheckedStruct) &&
                  ExternalMethodType_RegisterAsyncCallback ==
                      static_cast<uint32_t>(null_driver::Selector::RegisterAsyncCallback) &&
                  ExternalMethodType_AsyncRequest == static_cast<uint32_t>(null_driver::Selector::AsyncRequest),
              "NullDriver sample check: the schema numbers the selectors differently from the sample");

// The same structure, so sizeof(DataStruct) means the same in both tables.
static_assert(sizeof(DataStruct) == sizeof(null_driver::DataStruct) &&
                  offsetof(DataStruct, foo) == offsetof(null_driver::DataStruct, foo) &&
                  offsetof(DataStruct, bar) == offsetof(null_driver::DataStruct, bar),
              "NullDriver sample check: the schema's DataStruct differs from the sample's");
static_assert(sizeof(OversizedDataStruct) == 4104, "NullDriver sample check: OversizedDataStruct must be 4104 bytes");

// The checked selectors, field for field.
static_assert(GeneratedEntryMatchesSample(ExternalMethodType_CheckedScalar),
              "NullDriver sample check: kDispatchTable[CheckedScalar] differs from the sample's externalMethodChecks");
static_assert(GeneratedEntryMatchesSample(ExternalMethodType_CheckedStruct),
              "NullDriver sample check: kDispatchTable[CheckedStruct] differs from the sample's externalMethodChecks");
static_assert(GeneratedEntryMatchesSample(ExternalMethodType_RegisterAsyncCallback),
              "NullDriver sample check: kDispatchTable[RegisterAsyncCallback] differs from the sample's "
              "externalMethodChecks");
static_assert(GeneratedEntryMatchesSample(ExternalMethodType_AsyncRequest),
              "NullDriver sample check: kDispatchTable[AsyncRequest] differs from the sample's externalMethodChecks");

// The unchecked selectors: left out of the sample's table, zero-filled in the
// generated one (and routed by hand before the table is consulted).
static_assert(IsUncheckedEntry(externalMethodChecks[ExternalMethodType_Scalar]) &&
                  IsUncheckedEntry(null_driver::kDispatchTable[ExternalMethodType_Scalar]),
              "NullDriver sample check: kDispatchTable[Scalar] must be the zero-filled unchecked entry");
static_assert(IsUncheckedEntry(externalMethodChecks[ExternalMethodType_Struct]) &&
                  IsUncheckedEntry(null_driver::kDispatchTable[ExternalMethodType_Struct]),
              "NullDriver sample check: kDispatchTable[Struct] must be the zero-filled unchecked entry");

}  // namespace null_driver_sample

#endif /* NullDriver_SampleChecks_h */
