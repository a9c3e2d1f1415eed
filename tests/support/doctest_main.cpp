#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
// Also spelled out: the test programs force-include support/doctest_strings.hpp, so doctest.h's interface (which
// derives IMPLEMENT from IMPLEMENT_WITH_MAIN) was read before this line; its implementation part reads these.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>
