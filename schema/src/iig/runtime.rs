//! What `dextlink iig` knows about the classes of dextlink's DriverKit runtime
//! (`runtime/sim/driverkit/include/DriverKit/*.h` and `USBDriverKit/*.h`): which class declares each
//! method a dext may override, and whether it is a dispatched method (a stub,
//! an `_Impl`, a case in `_Dispatch`) or a plain C++ virtual. It is the table
//! of `runtime/sim/driverkit/IIG.md` ("The runtime's headers provide these"),
//! in the one place the generator reads it; a test checks it against the
//! headers.

/// How a runtime method is overridden.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A C++ virtual (`init`, `free`, a `LOCALONLY` method such as
    /// `ExternalMethod`): the override is declared as is, with `override`.
    Virtual,
    /// A dispatched method: the override is an `_Impl` that the class's
    /// `_Dispatch` calls for `<Decl>_<Method>_ID`. `impl_virtual` when the
    /// declaring class's `_Impl` is a C++ virtual, so the override's `_Impl`
    /// says `override`.
    Dispatched { impl_virtual: bool },
    /// An action type (`TYPE(Decl::Method)`): `<Decl>_<Method>_ID`, `_Args`
    /// and `_Invocation` exist, nothing is overridden.
    Action,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Method {
    pub name: &'static str,
    pub kind: Kind,
    /// The parameter names, which are the members of `<Decl>_<Method>_Invocation`.
    pub params: &'static [&'static str],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Class {
    pub name: &'static str,
    pub superclass: Option<&'static str>,
    pub methods: &'static [Method],
}

const fn virtual_(name: &'static str, params: &'static [&'static str]) -> Method {
    Method { name, kind: Kind::Virtual, params }
}

const fn dispatched(name: &'static str, params: &'static [&'static str]) -> Method {
    Method { name, kind: Kind::Dispatched { impl_virtual: false }, params }
}

const fn class(
    name: &'static str,
    superclass: Option<&'static str>,
    methods: &'static [Method],
) -> Class {
    Class { name, superclass, methods }
}

/// Every class of the runtime a dext class may derive from or name in
/// `TYPE(…)`, with the methods of IIG.md's table.
pub const CLASSES: &[Class] = &[
    class(
        "OSObject",
        None,
        &[
            virtual_("init", &[]),
            virtual_("free", &[]),
            virtual_("Dispatch", &["rpc"]),
            dispatched("SetDispatchQueue", &["name", "queue"]),
            dispatched("CopyDispatchQueue", &["name", "queue"]),
        ],
    ),
    class(
        "IOService",
        Some("OSObject"),
        &[
            dispatched("Start", &["provider"]),
            dispatched("Stop", &["provider"]),
            dispatched("RegisterService", &[]),
            dispatched("NewUserClient", &["type", "userClient"]),
            dispatched("Create", &["provider", "propertiesKey", "result"]),
            dispatched("Terminate", &["options"]),
            dispatched("CopyProperties", &["properties"]),
            dispatched("SetProperties", &["properties"]),
        ],
    ),
    class(
        "IOUserClient",
        Some("IOService"),
        &[
            dispatched("AsyncCompletion", &["action", "status", "asyncData", "asyncDataCount"]),
            // `= 0` in DriverKit's .iig: IOUserClient declares no `_Impl`,
            // so an override's `_Impl` is a plain member.
            dispatched("CopyClientMemoryForType", &["type", "options", "memory"]),
            virtual_(
                "ExternalMethod",
                &["selector", "arguments", "dispatch", "target", "reference"],
            ),
        ],
    ),
    class("IODispatchQueue", Some("OSObject"), &[]),
    class("IODispatchSource", Some("OSObject"), &[]),
    class(
        "IOTimerDispatchSource",
        Some("IODispatchSource"),
        &[Method { name: "TimerOccurred", kind: Kind::Action, params: &["action", "time"] }],
    ),
    class("IOMemoryDescriptor", Some("OSObject"), &[]),
    class(
        "IOBufferMemoryDescriptor",
        Some("IOMemoryDescriptor"),
        &[virtual_("SetLength", &["length"])],
    ),
    class("IOMemoryMap", Some("OSObject"), &[]),
    class("OSAction", Some("OSObject"), &[]),
    class("OSContainer", Some("OSObject"), &[]),
    class("OSCollection", Some("OSContainer"), &[]),
    class("OSArray", Some("OSCollection"), &[]),
    class("OSDictionary", Some("OSCollection"), &[]),
    class("OSBoolean", Some("OSContainer"), &[]),
    class("OSData", Some("OSContainer"), &[]),
    class("OSNumber", Some("OSContainer"), &[]),
    class("OSString", Some("OSContainer"), &[]),
    // USBDriverKit (`runtime/sim/driverkit/include/USBDriverKit/*.h`).
    class(
        "IOUSBHostDevice",
        Some("IOService"),
        &[
            dispatched(
                "DeviceRequest",
                &[
                    "forClient",
                    "bmRequestType",
                    "bRequest",
                    "wValue",
                    "wIndex",
                    "wLength",
                    "dataBuffer",
                    "bytesTransferred",
                    "completionTimeoutMs",
                ],
            ),
            dispatched("GetAddress", &["address"]),
            dispatched("GetSpeed", &["speed"]),
            virtual_("CopyDeviceDescriptor", &[]),
            virtual_("CopyConfigurationDescriptor", &["index"]),
            virtual_("CopyConfigurationDescriptorWithValue", &["bConfigurationValue"]),
            virtual_("CopyStringDescriptor", &["index", "languageID"]),
        ],
    ),
    class(
        "IOUSBHostInterface",
        Some("IOService"),
        &[
            dispatched("Open", &["forClient", "options", "arg"]),
            dispatched("Close", &["forClient", "options"]),
            dispatched("CopyPipe", &["address", "pipe"]),
            dispatched("CopyDevice", &["device"]),
            virtual_("CopyConfigurationDescriptor", &[]),
            virtual_("GetInterfaceDescriptor", &["configurationDescriptor"]),
            virtual_("CopyStringDescriptor", &["index", "languageID"]),
            virtual_("CreateIOBuffer", &["options", "capacity", "buffer"]),
            virtual_(
                "AsyncDeviceRequest",
                &[
                    "bmRequestType",
                    "bRequest",
                    "wValue",
                    "wIndex",
                    "wLength",
                    "dataBuffer",
                    "completion",
                    "completionTimeoutMs",
                ],
            ),
            virtual_(
                "DeviceRequest",
                &[
                    "bmRequestType",
                    "bRequest",
                    "wValue",
                    "wIndex",
                    "wLength",
                    "dataBuffer",
                    "bytesTransferred",
                    "completionTimeoutMs",
                ],
            ),
            virtual_("AbortDeviceRequests", &["options", "withError"]),
        ],
    ),
    class(
        "IOUSBHostPipe",
        Some("OSObject"),
        &[
            dispatched("GetSpeed", &["speed"]),
            dispatched("GetDeviceAddress", &["address"]),
            dispatched("Abort", &["options", "withError", "forClient"]),
            dispatched("GetDescriptors", &["descriptors", "type"]),
            dispatched("ClearStall", &["withRequest"]),
            dispatched(
                "AsyncIO",
                &["dataBuffer", "dataBufferLength", "completion", "completionTimeoutMs"],
            ),
            dispatched(
                "IO",
                &["dataBuffer", "dataBufferLength", "bytesTransferred", "completionTimeoutMs"],
            ),
            Method {
                name: "CompleteAsyncIO",
                kind: Kind::Action,
                params: &["action", "status", "actualByteCount", "completionTimestamp"],
            },
        ],
    ),
];

pub fn class_named(name: &str) -> Option<&'static Class> {
    CLASSES.iter().find(|c| c.name == name)
}

/// The runtime's array typedefs and their element types: a parameter of one of
/// these types is a pointer in an `_Invocation` (IIG.md: `const
/// IOUserClientAsyncArgumentsArray asyncData` becomes `const uint64_t* asyncData`).
pub const ARRAY_TYPEDEFS: &[(&str, &str)] = &[
    ("IOUserClientScalarArray", "uint64_t"),
    ("IOUserClientAsyncReferenceArray", "uint64_t"),
    ("IOUserClientAsyncArgumentsArray", "uint64_t"),
    ("IOServiceName", "char"),
    ("IOPropertyName", "char"),
    ("IORegistryPlaneName", "char"),
    ("IODispatchQueueName", "char"),
];
