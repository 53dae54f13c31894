using Runtime.Cluster.Configuration;
using Runtime.Cluster.Tests.Support;

namespace Runtime.Cluster.Tests.Configuration;

public class HoconLoaderTests
{
    static Func<string, string?> Env(params (string Name, string Value)[] vars) =>
        name => vars.FirstOrDefault(v => v.Name == name).Value;

    [Fact]
    public void Set_environment_variable_replaces_the_substitution_as_a_string()
    {
        var config = HoconLoader.Parse("a = \"x\"\na = ${?RT_TEST}\nb = ${RT_TEST}", "t.conf",
            environment: Env(("RT_TEST", "Host=h;Password=p\"q")));
        Assert.Equal("Host=h;Password=p\"q", config.GetString("a"));
        Assert.Equal("Host=h;Password=p\"q", config.GetString("b"));
    }

    [Fact]
    public void Unset_optional_variable_keeps_the_earlier_value_of_the_key()
    {
        var config = HoconLoader.Parse("a = \"x\"\na = ${?RT_TEST}   # from the environment\nc = 1", "t.conf", environment: Env());
        Assert.Equal("x", config.GetString("a"));
        Assert.Equal(1, config.GetInt("c"));
    }

    [Fact]
    public void Unset_required_variable_is_an_error_naming_file_line_and_variable()
    {
        var e = Assert.Throws<HoconException>(() => HoconLoader.Parse("a = 1\nb = ${RT_TEST}", "t.conf", environment: Env()));
        Assert.StartsWith("t.conf:2:", e.Message);
        Assert.Contains("RT_TEST", e.Message);
    }

    [Fact]
    public void Substitutions_inside_strings_and_comments_and_config_paths_are_left_alone()
    {
        var config = HoconLoader.Parse("x = 5\na = \"${RT_TEST}\"\n# ${RT_MISSING}\nb = ${x}", "t.conf", environment: Env(("RT_TEST", "v")));
        Assert.Equal("${RT_TEST}", config.GetString("a"));
        Assert.Equal(5, config.GetInt("b"));
    }

    [Fact]
    public void Includes_are_relative_to_the_including_file()
    {
        using var dir = new TempDir();
        Directory.CreateDirectory(dir["sub"]);
        File.WriteAllText(dir["sub/base.conf"], "a = 1\nb = 2");
        File.WriteAllText(dir["main.conf"], "include \"sub/base.conf\"\nb = 3");
        var config = HoconLoader.LoadFile(dir["main.conf"]);
        Assert.Equal(1, config.GetInt("a"));
        Assert.Equal(3, config.GetInt("b"));
    }

    [Fact]
    public void A_missing_include_names_the_including_file()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir["main.conf"], "include \"nope.conf\"");
        var e = Assert.Throws<HoconException>(() => HoconLoader.LoadFile(dir["main.conf"]));
        Assert.Contains("main.conf", e.Message);
        Assert.Contains("nope.conf", e.Message);
    }

    [Fact]
    public void An_unclosed_brace_is_reported_with_its_line()
    {
        var e = Assert.Throws<HoconException>(() => HoconLoader.Parse("a = 1\nrun {\n  b = 2\n", "t.conf"));
        Assert.Equal("t.conf:2: '{' is never closed", e.Message);
        var e2 = Assert.Throws<HoconException>(() => HoconLoader.Parse("a = [1, 2}\n", "t.conf"));
        Assert.StartsWith("t.conf:1: '}' does not match", e2.Message);
    }

    [Fact]
    public void Parser_errors_name_the_source()
    {
        var e = Assert.Throws<HoconException>(() => HoconLoader.Parse("x = 1\nrun { a = ${nope} }", "t.conf"));
        Assert.Equal("t.conf: Unresolved substitution: nope", e.Message);
    }

    [Fact]
    public void A_parser_position_becomes_line_and_column()
    {
        Assert.Equal(":2:3", HoconText.Where("ab\ncdef", "Unknown token at position 5: ..."));
        Assert.Equal("", HoconText.Where("ab", "no position here"));
    }

    [Fact]
    public void Commas_after_objects_separate_fields_as_in_standard_hocon()
    {
        // Akka's own parser rejects `{ ... },` between fields; lists of objects keep their commas.
        var config = HoconLoader.Parse("run { a { b = 1 }, c = 2, d = [{ e = 3 }, { e = 4 }] }, x = \"},\"", "t.conf");
        Assert.Equal(1, config.GetInt("run.a.b"));
        Assert.Equal(2, config.GetInt("run.c"));
        Assert.Equal(2, config.GetValue("run.d").GetArray().Count);
        Assert.Equal("},", config.GetString("x"));
    }
}
