// A test-only stand-in (see IOUSBHostPipe.h): the fwloader user client's .iig
// includes this header but its generated class names nothing from it.
#ifndef DEXTLINK_TEST_IOUSBHOSTINTERFACE_H
#define DEXTLINK_TEST_IOUSBHOSTINTERFACE_H

#include <DriverKit/IOService.h>

#endif
