"""SafeSchool Link: a chatbot network linking schools, area police and parents."""
