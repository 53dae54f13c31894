using Runtime.Model.Tests.Tokenization;
using Runtime.Training.Data;

namespace Runtime.Training.Tests.Data;

/// <summary>Every kind of bad row fails naming file:line and the problem; skip-invalid counts them instead.</summary>
public sealed class BadDataTests(RealTokenizerFixture fixture) : IClassFixture<RealTokenizerFixture>, IDisposable
{
    const string Good = """{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}""";
    readonly DataTempFolder _folder = new();

    public void Dispose() => _folder.Dispose();

    /// <summary>Two good rows and a blank line, then the bad row on line 4.</summary>
    DataFormatException BuildFailsOnLine4(string badRow, DataOptions? options = null)
    {
        var data = _folder.WriteJsonl("data.jsonl", Good, "", Good, badRow, Good);
        var error = Assert.Throws<DataFormatException>(() =>
            TokenCache.OpenOrBuild(data, fixture.Tokenizer, options ?? new DataOptions(256)).Dispose());
        Assert.StartsWith($"{data}:4: ", error.Message);
        Assert.Equal(4, error.Line);
        Assert.Equal(data, error.File);
        return error;
    }

    [Fact]
    public void Malformed_json()
    {
        var error = BuildFailsOnLine4("""{"text": "unterminated""");
        Assert.Equal(SkipReason.MalformedJson, error.Reason);
        Assert.Contains("malformed JSON", error.Message);
    }

    [Fact]
    public void A_row_of_no_known_shape_names_its_keys_and_the_expected_ones()
    {
        var error = BuildFailsOnLine4("""{"prompt": "x", "completion": "y"}""");
        Assert.Equal(SkipReason.UnknownShape, error.Reason);
        Assert.Contains("\"prompt\", \"completion\"", error.Message);
        foreach (var key in new[] { "messages", "instruction", "output", "input_ids", "text" }) Assert.Contains($"\"{key}\"", error.Message);
    }

    [Fact]
    public void A_row_that_is_not_an_object()
    {
        var error = BuildFailsOnLine4("""["a", "b"]""");
        Assert.Equal(SkipReason.UnknownShape, error.Reason);
        Assert.Contains("list, not an object", error.Message);
    }

    [Fact]
    public void Instruction_without_output()
    {
        var error = BuildFailsOnLine4("""{"instruction": "Do it."}""");
        Assert.Equal(SkipReason.UnknownShape, error.Reason);
        Assert.Contains("\"output\"", error.Message);
    }

    [Fact]
    public void Unknown_role()
    {
        var error = BuildFailsOnLine4("""{"messages": [{"role": "user", "content": "Hi"}, {"role": "tool", "content": "42"}]}""");
        Assert.Equal(SkipReason.InvalidConversation, error.Reason);
        Assert.Contains("messages[1] has role \"tool\"", error.Message);
    }

    [Fact]
    public void No_assistant_turn()
    {
        var error = BuildFailsOnLine4("""{"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"}]}""");
        Assert.Equal(SkipReason.InvalidConversation, error.Reason);
        Assert.Contains("no assistant turn", error.Message);
    }

    [Theory]
    [InlineData("""{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "  \n"}]}""", "messages[1] (assistant) has empty content")]
    [InlineData("""{"messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": "Yes"}]}""", "messages[0] (user) has empty content")]
    [InlineData("""{"instruction": " ", "output": "Yes"}""", "\"instruction\" is empty")]
    [InlineData("""{"instruction": "Say it", "output": ""}""", "\"output\" is empty")]
    [InlineData("""{"text": ""}""", "\"text\" is empty")]
    [InlineData("""{"input_ids": []}""", "\"input_ids\" is empty")]
    public void Empty_content_where_it_matters(string row, string problem)
    {
        var error = BuildFailsOnLine4(row);
        Assert.Equal(SkipReason.EmptyContent, error.Reason);
        Assert.Contains(problem, error.Message);
    }

    [Fact]
    public void An_empty_system_message_is_allowed()
    {
        var data = _folder.WriteJsonl("data.jsonl",
            """{"messages": [{"role": "system", "content": ""}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}""");
        using var cache = TokenCache.OpenOrBuild(data, fixture.Tokenizer, new DataOptions(256));
        Assert.Equal(1, cache.Count);
    }

    [Theory]
    [InlineData("""{"input_ids": [128000, 9906, 128256]}""", "input_ids[2] = 128256")]
    [InlineData("""{"input_ids": [-5, 9906]}""", "input_ids[0] = -5")]
    public void Ids_outside_the_vocabulary_name_index_value_and_range(string row, string where)
    {
        var error = BuildFailsOnLine4(row);
        Assert.Equal(SkipReason.TokenOutOfRange, error.Reason);
        Assert.Contains(where, error.Message);
        Assert.Contains("0..128255", error.Message);
    }

    [Fact]
    public void A_non_integer_id_is_a_shape_error()
    {
        var error = BuildFailsOnLine4("""{"input_ids": [1, 2.5]}""");
        Assert.Equal(SkipReason.UnknownShape, error.Reason);
        Assert.Contains("input_ids[1] is 2.5", error.Message);
    }

    [Fact]
    public void Labels_length_mismatch()
    {
        var error = BuildFailsOnLine4("""{"input_ids": [128000, 9906, 1917], "labels": [9906, 1917]}""");
        Assert.Equal(SkipReason.InvalidLabels, error.Reason);
        Assert.Contains("\"labels\" has 2 entries but \"input_ids\" has 3", error.Message);
    }

    [Fact]
    public void Labels_that_are_neither_ignored_nor_the_id()
    {
        var error = BuildFailsOnLine4("""{"input_ids": [128000, 9906, 1917], "labels": [-100, 1917, 1917]}""");
        Assert.Equal(SkipReason.InvalidLabels, error.Reason);
        Assert.Contains("labels[1] = 1917", error.Message);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void An_empty_file_is_named(bool blankLines)
    {
        var data = _folder.WriteJsonl("empty.jsonl", blankLines ? ["", "   ", "\t"] : []);
        var error = Assert.Throws<DataFormatException>(() => TokenCache.OpenOrBuild(data, fixture.Tokenizer, new DataOptions(256)));
        Assert.StartsWith($"{data}: ", error.Message);
        Assert.Contains("empty", error.Message);
        Assert.Equal(["empty.jsonl"], _folder.FileNames()); // no cache, no leftovers
    }

    [Fact]
    public void Skip_invalid_counts_each_reason_and_keeps_the_good_rows()
    {
        var data = _folder.WriteJsonl("data.jsonl",
            Good,
            """{"text": "unterminated""",
            """{"prompt": "x"}""",
            """{"messages": [{"role": "tool", "content": "x"}, {"role": "assistant", "content": "y"}]}""",
            """{"messages": [{"role": "user", "content": "x"}]}""",
            """{"instruction": "x", "output": " "}""",
            """{"input_ids": [1, 999999]}""",
            """{"input_ids": [1, 2], "labels": [1]}""",
            "",
            $$"""{"text": "{{string.Join(' ', Enumerable.Repeat("longer than max-seq-length", 30))}}"}""",
            Good);
        using var cache = TokenCache.OpenOrBuild(data, fixture.Tokenizer, new DataOptions(64) { SkipInvalid = true });
        var counts = cache.Counts;
        Assert.Equal(10, counts.Rows);
        Assert.Equal(3, counts.Samples);
        Assert.Equal(3, cache.Count);
        Assert.Equal(1, counts.Truncated);
        Assert.Equal(1, counts.SkippedFor(SkipReason.MalformedJson));
        Assert.Equal(1, counts.SkippedFor(SkipReason.UnknownShape));
        Assert.Equal(2, counts.SkippedFor(SkipReason.InvalidConversation));
        Assert.Equal(1, counts.SkippedFor(SkipReason.EmptyContent));
        Assert.Equal(1, counts.SkippedFor(SkipReason.TokenOutOfRange));
        Assert.Equal(1, counts.SkippedFor(SkipReason.InvalidLabels));
        Assert.Equal(7, counts.TotalSkipped);
        Assert.Equal([1L, 10, 11], Enumerable.Range(0, cache.Count).Select(cache.SourceLine));
        Assert.Contains("skipped 7 (malformed JSON 1, unknown row shape 1, invalid conversation 2", counts.Summary());
    }

    [Fact]
    public void A_sample_with_nothing_learned_after_truncation_is_dropped_and_counted_even_without_skip_invalid()
    {
        var longPrompt = string.Join(' ', Enumerable.Repeat("word", 80));
        var data = _folder.WriteJsonl("data.jsonl",
            Good,
            $$"""{"instruction": "{{longPrompt}}", "output": "Yes"}""");
        using var cache = TokenCache.OpenOrBuild(data, fixture.Tokenizer, new DataOptions(64));
        Assert.Equal(1, cache.Count);
        Assert.Equal(1, cache.Counts.SkippedFor(SkipReason.NoLearnedTokens));
        Assert.Equal(0, cache.Counts.Truncated); // Truncated counts kept samples; the dropped one is counted as dropped
    }

    [Fact]
    public void A_file_whose_every_row_is_skipped_is_an_error_with_the_counts()
    {
        var data = _folder.WriteJsonl("data.jsonl", "{", """{"x": 1}""");
        var error = Assert.Throws<DataFormatException>(() =>
            TokenCache.OpenOrBuild(data, fixture.Tokenizer, new DataOptions(64) { SkipInvalid = true }));
        Assert.StartsWith($"{data}: no usable samples", error.Message);
        Assert.Contains("malformed JSON 1", error.Message);
    }
}
