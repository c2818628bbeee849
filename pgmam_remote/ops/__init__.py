"""Operations: each builds a Plan from facts (pure) and runs it."""
