// A fresh directory under /tmp per test, removed at the end.
#ifndef TALLY_TESTS_JOIN_TEST_DIR_H_
#define TALLY_TESTS_JOIN_TEST_DIR_H_

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <string>

#include "gtest/gtest.h"

namespace tally::testing {

class TestDir {
 public:
  TestDir() {
    static std::atomic<int> counter{0};
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = std::filesystem::temp_directory_path() /
            ("tally-join-" + std::to_string(getpid()) + "-" + std::to_string(counter++) + "-" +
             (info ? info->name() : "x"));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TestDir() { std::filesystem::remove_all(path_); }
  TestDir(const TestDir&) = delete;
  TestDir& operator=(const TestDir&) = delete;
  std::string path() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

}  // namespace tally::testing

#endif  // TALLY_TESTS_JOIN_TEST_DIR_H_
