"""What a trained model gives: its evaluation, its analysis and the numbers its pictures show."""
