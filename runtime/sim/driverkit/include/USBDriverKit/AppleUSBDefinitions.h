// The USB descriptors and request constants a dext uses, under Apple's
// names (USB 2.0 chapter 9 layouts, little-endian fields, packed), and the
// descriptor walkers USBDriverKit provides.
#ifndef DEXTLINK_USBDRIVERKIT_APPLEUSBDEFINITIONS_H
#define DEXTLINK_USBDRIVERKIT_APPLEUSBDEFINITIONS_H

#include <stddef.h>
#include <stdint.h>

enum tIOUSBDescriptorType {
    kIOUSBDescriptorTypeDevice = 1,
    kIOUSBDescriptorTypeConfiguration = 2,
    kIOUSBDescriptorTypeString = 3,
    kIOUSBDescriptorTypeInterface = 4,
    kIOUSBDescriptorTypeEndpoint = 5,
    kIOUSBDescriptorTypeDeviceQualifier = 6,
    kIOUSBDescriptorTypeOtherSpeedConfiguration = 7,
    kIOUSBDescriptorTypeInterfacePower = 8,
    kIOUSBDescriptorTypeOTG = 9,
    kIOUSBDescriptorTypeDebug = 10,
    kIOUSBDescriptorTypeInterfaceAssociation = 11,
    kIOUSBDescriptorTypeBOS = 15,
    kIOUSBDescriptorTypeDeviceCapability = 16,
    kIOUSBDescriptorTypeSuperSpeedUSBEndpointCompanion = 48,
    kIOUSBDescriptorTypeSuperSpeedPlusIsochronousEndpointCompanion = 49,
};

enum tIOUSBDescriptorSize {
    kIOUSBDescriptorHeaderSize = 2,
    kIOUSBDescriptorSizeDevice = 18,
    kIOUSBDescriptorSizeConfiguration = 9,
    kIOUSBDescriptorSizeInterface = 9,
    kIOUSBDescriptorSizeEndpoint = 7,
    kIOUSBDescriptorSizeStringMinimum = kIOUSBDescriptorHeaderSize,
    kIOUSBDescriptorSizeStringMaximum = 255,
};

struct IOUSBDescriptorHeader {
    uint8_t bLength;
    uint8_t bDescriptorType;
} __attribute__((packed));
typedef struct IOUSBDescriptorHeader IOUSBDescriptorHeader;
typedef IOUSBDescriptorHeader IOUSBDescriptor;

struct IOUSBDeviceDescriptor {
    uint8_t bLength;
    uint8_t bDescriptorType;
    uint16_t bcdUSB;
    uint8_t bDeviceClass;
    uint8_t bDeviceSubClass;
    uint8_t bDeviceProtocol;
    uint8_t bMaxPacketSize0;
    uint16_t idVendor;
    uint16_t idProduct;
    uint16_t bcdDevice;
    uint8_t iManufacturer;
    uint8_t iProduct;
    uint8_t iSerialNumber;
    uint8_t bNumConfigurations;
} __attribute__((packed));
typedef struct IOUSBDeviceDescriptor IOUSBDeviceDescriptor;

struct IOUSBConfigurationDescriptor {
    uint8_t bLength;
    uint8_t bDescriptorType;
    uint16_t wTotalLength;
    uint8_t bNumInterfaces;
    uint8_t bConfigurationValue;
    uint8_t iConfiguration;
    uint8_t bmAttributes;
    uint8_t MaxPower;
} __attribute__((packed));
typedef struct IOUSBConfigurationDescriptor IOUSBConfigurationDescriptor;

struct IOUSBInterfaceDescriptor {
    uint8_t bLength;
    uint8_t bDescriptorType;
    uint8_t bInterfaceNumber;
    uint8_t bAlternateSetting;
    uint8_t bNumEndpoints;
    uint8_t bInterfaceClass;
    uint8_t bInterfaceSubClass;
    uint8_t bInterfaceProtocol;
    uint8_t iInterface;
} __attribute__((packed));
typedef struct IOUSBInterfaceDescriptor IOUSBInterfaceDescriptor;

struct IOUSBEndpointDescriptor {
    uint8_t bLength;
    uint8_t bDescriptorType;
    uint8_t bEndpointAddress;
    uint8_t bmAttributes;
    uint16_t wMaxPacketSize;
    uint8_t bInterval;
} __attribute__((packed));
typedef struct IOUSBEndpointDescriptor IOUSBEndpointDescriptor;

struct IOUSBStringDescriptor {
    uint8_t bLength;
    uint8_t bDescriptorType;
    uint8_t bString[1];
} __attribute__((packed));
typedef struct IOUSBStringDescriptor IOUSBStringDescriptor;

struct IOUSBBOSDescriptor {
    uint8_t bLength;
    uint8_t bDescriptorType;
    uint16_t wTotalLength;
    uint8_t bNumDeviceCaps;
} __attribute__((packed));
typedef struct IOUSBBOSDescriptor IOUSBBOSDescriptor;

struct IOUSBSuperSpeedEndpointCompanionDescriptor {
    uint8_t bLength;
    uint8_t bDescriptorType;
    uint8_t bMaxBurst;
    uint8_t bmAttributes;
    uint16_t wBytesPerInterval;
} __attribute__((packed));
typedef struct IOUSBSuperSpeedEndpointCompanionDescriptor IOUSBSuperSpeedEndpointCompanionDescriptor;

struct IOUSBSuperSpeedPlusIsochronousEndpointCompanionDescriptor {
    uint8_t bLength;
    uint8_t bDescriptorType;
    uint16_t wReserved;
    uint32_t dwBytesPerInterval;
} __attribute__((packed));
typedef struct IOUSBSuperSpeedPlusIsochronousEndpointCompanionDescriptor
    IOUSBSuperSpeedPlusIsochronousEndpointCompanionDescriptor;

// bEndpointAddress and bmAttributes of an endpoint descriptor.
enum {
    kIOUSBEndpointDescriptorNumber = 0x0f,
    kIOUSBEndpointDescriptorEndpointAddressReserved = 0x70,
    kIOUSBEndpointDescriptorDirection = 0x80,
    kIOUSBEndpointDescriptorDirectionOut = 0x00,
    kIOUSBEndpointDescriptorDirectionIn = 0x80,
    kIOUSBEndpointDescriptorTransferType = 0x03,
    kIOUSBEndpointDescriptorTransferTypeControl = 0x00,
    kIOUSBEndpointDescriptorTransferTypeIsochronous = 0x01,
    kIOUSBEndpointDescriptorTransferTypeBulk = 0x02,
    kIOUSBEndpointDescriptorTransferTypeInterrupt = 0x03,
};

// bmRequestType of a device request: direction, type, recipient.
enum tIOUSBDeviceRequestDirectionValue {
    kIOUSBDeviceRequestDirectionValueOut = 0,
    kIOUSBDeviceRequestDirectionValueIn = 1,
};
enum tIOUSBDeviceRequestTypeValue {
    kIOUSBDeviceRequestTypeValueStandard = 0,
    kIOUSBDeviceRequestTypeValueClass = 1,
    kIOUSBDeviceRequestTypeValueVendor = 2,
};
enum tIOUSBDeviceRequestRecipientValue {
    kIOUSBDeviceRequestRecipientValueDevice = 0,
    kIOUSBDeviceRequestRecipientValueInterface = 1,
    kIOUSBDeviceRequestRecipientValueEndpoint = 2,
    kIOUSBDeviceRequestRecipientValueOther = 3,
};
enum {
    kIOUSBDeviceRequestDirectionPhase = 7,
    kIOUSBDeviceRequestDirectionOut = (kIOUSBDeviceRequestDirectionValueOut << 7),
    kIOUSBDeviceRequestDirectionIn = (kIOUSBDeviceRequestDirectionValueIn << 7),
    kIOUSBDeviceRequestTypePhase = 5,
    kIOUSBDeviceRequestTypeStandard = (kIOUSBDeviceRequestTypeValueStandard << 5),
    kIOUSBDeviceRequestTypeClass = (kIOUSBDeviceRequestTypeValueClass << 5),
    kIOUSBDeviceRequestTypeVendor = (kIOUSBDeviceRequestTypeValueVendor << 5),
    kIOUSBDeviceRequestRecipientDevice = kIOUSBDeviceRequestRecipientValueDevice,
    kIOUSBDeviceRequestRecipientInterface = kIOUSBDeviceRequestRecipientValueInterface,
    kIOUSBDeviceRequestRecipientEndpoint = kIOUSBDeviceRequestRecipientValueEndpoint,
    kIOUSBDeviceRequestRecipientOther = kIOUSBDeviceRequestRecipientValueOther,
};
#define makeDeviceRequestbmRequestType(direction, type, recipient)                                 \
    ((uint8_t)((((direction) & 1) << kIOUSBDeviceRequestDirectionPhase) |                           \
               (((type) & 3) << kIOUSBDeviceRequestTypePhase) | ((recipient) & 0x1f)))

// bRequest of the standard requests (USB 2.0 table 9-4).
enum tIOUSBDeviceRequest {
    kIOUSBDeviceRequestGetStatus = 0,
    kIOUSBDeviceRequestClearFeature = 1,
    kIOUSBDeviceRequestSetFeature = 3,
    kIOUSBDeviceRequestSetAddress = 5,
    kIOUSBDeviceRequestGetDescriptor = 6,
    kIOUSBDeviceRequestSetDescriptor = 7,
    kIOUSBDeviceRequestGetConfiguration = 8,
    kIOUSBDeviceRequestSetConfiguration = 9,
    kIOUSBDeviceRequestGetInterface = 10,
    kIOUSBDeviceRequestSetInterface = 11,
    kIOUSBDeviceRequestSynchFrame = 12,
};

// The feature selector ClearStall's request sends (USB 2.0 table 9-6).
enum { kIOUSBDeviceFeatureSelectorEndpointHalt = 0 };

struct IOUSBDeviceRequest {
    uint8_t bmRequestType;
    uint8_t bRequest;
    uint16_t wValue;
    uint16_t wIndex;
    uint16_t wLength;
} __attribute__((packed));
typedef struct IOUSBDeviceRequest IOUSBDeviceRequest;

#ifdef __cplusplus
extern "C" {
#endif

// The descriptor after `currentDescriptor` (NULL: the first after the
// configuration descriptor itself) inside wTotalLength, or NULL.
const IOUSBDescriptorHeader* IOUSBGetNextDescriptor(const IOUSBConfigurationDescriptor* configurationDescriptor,
                                                    const IOUSBDescriptorHeader* currentDescriptor);
const IOUSBDescriptorHeader* IOUSBGetNextDescriptorWithType(
    const IOUSBConfigurationDescriptor* configurationDescriptor, const IOUSBDescriptorHeader* currentDescriptor,
    const uint8_t type);
const IOUSBInterfaceDescriptor* IOUSBGetNextInterfaceDescriptor(
    const IOUSBConfigurationDescriptor* configurationDescriptor, const IOUSBDescriptorHeader* currentDescriptor);
// The next endpoint descriptor of `interfaceDescriptor` after `currentDescriptor`
// (NULL: the interface's first), stopping at the next interface descriptor.
const IOUSBEndpointDescriptor* IOUSBGetNextEndpointDescriptor(
    const IOUSBConfigurationDescriptor* configurationDescriptor, const IOUSBInterfaceDescriptor* interfaceDescriptor,
    const IOUSBDescriptorHeader* currentDescriptor);

#ifdef __cplusplus
}
#endif

#endif
