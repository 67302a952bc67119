#!/usr/bin/env bash
# Compile the plain-Java core (no Android) and run its JUnit 4 tests on the desktop JVM.
#   android_demo/core/run_tests.sh            (or: make -C android_demo test)
# Needs a JDK (javac/java 11+) and JUnit 4 + Hamcrest jars: `apt-get install junit4` puts them in
# /usr/share/java; set JUNIT_JAR / HAMCREST_JAR to use other copies. Classes go to core/build/.
# Exits non-zero when compilation or any test fails; prints JUnit's "OK (N tests)" on success.
set -euo pipefail
cd "$(dirname "$0")"

JUNIT_JAR=${JUNIT_JAR:-}
HAMCREST_JAR=${HAMCREST_JAR:-}
for j in /usr/share/java/junit4.jar /usr/share/java/junit4-*.jar; do
    [[ -z "$JUNIT_JAR" && -f "$j" ]] && JUNIT_JAR=$j
done
for h in /usr/share/java/hamcrest-core.jar /usr/share/java/hamcrest.jar /usr/share/java/hamcrest-all.jar; do
    [[ -z "$HAMCREST_JAR" && -f "$h" ]] && HAMCREST_JAR=$h
done
if ! command -v javac >/dev/null || [[ -z "$JUNIT_JAR" || -z "$HAMCREST_JAR" ]]; then
    echo "android_demo/core: needs javac and JUnit 4 + Hamcrest (apt-get install default-jdk-headless junit4)," >&2
    echo "  or set JUNIT_JAR and HAMCREST_JAR" >&2
    exit 1
fi

rm -rf build/classes build/test-classes
mkdir -p build/classes build/test-classes
# --release 11: the core must stay within what Android's toolchain (D8) accepts.
javac --release 11 -Xlint:all -Werror -encoding UTF-8 -d build/classes $(find src/main/java -name '*.java')
javac --release 11 -encoding UTF-8 -cp "build/classes:$JUNIT_JAR" -d build/test-classes \
    $(find src/test/java -name '*.java')
tests=$(cd src/test/java && find . -name '*Test.java' | sed 's|^\./||; s|\.java$||; s|/|.|g' | sort)
# shellcheck disable=SC2086
exec java -cp "build/classes:build/test-classes:$JUNIT_JAR:$HAMCREST_JAR" org.junit.runner.JUnitCore $tests
